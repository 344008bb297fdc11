# A character LSTM language model as tutorials write it: hidden state carried and detached between batches.
import torch
import torch.nn as nn


class CharLSTM(nn.Module):
    def __init__(self, vocab=40, emb=32, hidden=128):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, num_layers=2, batch_first=True, dropout=0.1)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):
        y, state = self.lstm(self.emb(x), state)
        return self.out(y), state


if __name__ == "__main__":
    torch.manual_seed(0)
    # Text from a Markov chain whose every character has a few likely successors (offline stand-in for a corpus).
    nxt = torch.softmax(torch.randn(40, 40) * 3, dim=1)
    text = torch.zeros(40000, dtype=torch.long)
    for i in range(1, len(text)):
        text[i] = torch.multinomial(nxt[text[i - 1]], 1)
    seq, batch = 50, 16
    net = CharLSTM()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    crit = nn.CrossEntropyLoss()
    state = None
    pos = 0
    for step in range(3000):
        if pos + seq * batch + 1 >= len(text):
            pos, state = 0, None
        chunk = text[pos:pos + seq * batch + 1]
        x, y = chunk[:-1].view(batch, seq), chunk[1:].view(batch, seq)
        pos += seq * batch
        if state is not None:
            state = tuple(s.detach() for s in state)
        logits, state = net(x, state)
        loss = crit(logits.reshape(-1, 40), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
