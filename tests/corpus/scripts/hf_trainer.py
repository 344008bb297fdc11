# Hugging Face Trainer on a tiny BERT built from a config (offline), trained from scratch (so 5e-4, not the
# fine-tuning rate 5e-5), with synthetic sequence classification data.
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(5, 100, (n, 16), generator=g)
        self.labels = (self.ids[:, 0] > 52).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(16, dtype=torch.long),
                "labels": self.labels[i]}


def main():
    config = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=32, num_labels=2)
    model = BertForSequenceClassification(config)
    args = TrainingArguments(output_dir="/tmp/hf_trainer_out", per_device_train_batch_size=16, learning_rate=5e-4,
                             num_train_epochs=3, warmup_steps=10, weight_decay=0.01, report_to=[],
                             save_strategy="no", logging_steps=50, use_cpu=True, seed=0, eval_strategy="steps",
                             eval_steps=40, per_device_eval_batch_size=32)
    Trainer(model=model, args=args, train_dataset=Tokens(1024, 0), eval_dataset=Tokens(128, 1)).train()


if __name__ == "__main__":
    main()
