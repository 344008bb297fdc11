"""Whether a report says what a corpus case's labels say: used by tests/test_corpus.py and bench/corpus_score.py."""


def headline_right(case, report) -> bool:
    accepted = {case.headline} if isinstance(case.headline, str) else set(case.headline)
    return bool(report.root_causes) and report.root_causes[0] in accepted


def judge(case, report) -> list[str]:
    """The labels a report breaks, as sentences; empty when it is right."""
    loud = {f.rule for f in report.findings if f.severity != "info"}
    wrong = []
    if case.healthy and loud:
        wrong.append(f"false alarm on a healthy model: {sorted(loud)}")
    if case.must - loud:
        wrong.append(f"missed: {sorted(case.must - loud)}")
    if case.must_not & loud:
        wrong.append(f"must not fire: {sorted(case.must_not & loud)}")
    if case.headline and not headline_right(case, report):
        wrong.append(f"headline {report.root_causes[:1]} instead of {case.headline}")
    return wrong
