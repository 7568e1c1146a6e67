"""Local LLM backend: tokens/s at 1, 4 and 16 concurrent requests, and the valid-proposal rate
of update-rule mutations with and without grammar-constrained decoding.

    python bench/llm_throughput.py [--threads 1] [--max-tokens 48] [--proposals 16] [--model FILE]
                                   [--no-prefix-sharing]

Throughput: B different requests (sampling at temperature 0.8, seeded) go to one
``chat()`` call, which the local backend generates as one batch; tokens/s counts the
completion tokens generated over the wall time of the call (prefill included). The
B=1 row is the one-at-a-time reference; the ratio column is tokens/s relative to it.
A second table sends B mutation-style requests that share the system prompt with the DSL
reference (as the search does), with the shared prompt prefix computed once (the default)
and for every row (``prefix_sharing=False``). Label scoring: ``logprobs`` of 4 label variants
for each classification prompt, the prompt run once per prompt (default) or once per pair.

Valid proposals: the model is asked to mutate AdamW and Lion (DSL reference in the
system prompt, the parent in a ```python block), ``--proposals`` samples each, without
and with ``grammar="dsl"`` (names from the parent). A proposal is valid when code
extracted from the reply (``search.rules.llm_ops.extract_candidates``: fenced block, open
fence, bare def) passes ``dsl.parse``. Nothing is executed.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

import dsl
from dsl.library import RULES
from search.llm import ChatRequest, Message, dsl_grammar_names
from search.llm.local import LocalLLM
from search.rules.llm_ops import SYSTEM, extract_candidates

TOPICS = ["the sea", "a mountain", "a city at night", "a forest", "the desert", "a library", "a train journey",
          "winter", "a market", "the moon", "a river", "a storm", "a garden", "an old house", "a bridge", "autumn"]


def timed_chat(llm: LocalLLM, reqs: list[ChatRequest]) -> tuple[float, int, float]:
    """One ``chat()`` call: (completion tokens/s, completion tokens, wall seconds); raises on an error."""
    t0 = time.perf_counter()
    out = llm.chat(reqs)
    wall = time.perf_counter() - t0
    errs = [r.error for r in out if r.error]
    if errs:
        raise RuntimeError(errs[0])
    toks = sum(r.completion_tokens for r in out)
    return toks / wall, toks, wall


def throughput(llm: LocalLLM, batch: int, max_tokens: int) -> tuple[float, int, float]:
    reqs = [ChatRequest(messages=[Message(role="user", content=f"Write a long, detailed story about "
                                                               f"{TOPICS[i % len(TOPICS)]}.")],
                        temperature=0.8, max_tokens=max_tokens, seed=100 + i) for i in range(batch)]
    return timed_chat(llm, reqs)


def shared_throughput(llm: LocalLLM, batch: int, max_tokens: int) -> tuple[float, int, float, int]:
    """B requests that share the search's system prompt (DSL reference), each another parent."""
    names = sorted(RULES)
    system = SYSTEM + "\n\n" + dsl.reference_text()
    reqs = []
    for i in range(batch):
        parent = dsl.parse(RULES[names[i % len(names)]])
        user = f"Here is the update rule {parent.name}:\n```python\n{parent.source()}```\nPropose a variant."
        reqs.append(ChatRequest(messages=[Message(role="system", content=system), Message(role="user", content=user)],
                                temperature=0.8, max_tokens=max_tokens, seed=200 + i))
    saved = llm.prefill_tokens_saved
    rate, toks, wall = timed_chat(llm, reqs)
    return rate, toks, wall, llm.prefill_tokens_saved - saved


def label_scoring(llm: LocalLLM, queries: int) -> float:
    """Seconds to score 4 label variants for each of ``queries`` classification prompts."""
    msgs = [llm.render_chat([Message(role="user", content=(
        "Instruction: Classify the sentiment of the review as positive or negative.\n\n"
        f"Input: review {i}: the film was {TOPICS[i % len(TOPICS)]}-themed and "
        f"{'wonderful' if i % 2 else 'boring'}.\nOutput:"))]) for i in range(queries)]
    t0 = time.perf_counter()
    llm.logprobs(msgs, [[" positive", " Positive", " negative", " Negative"]] * queries)
    return time.perf_counter() - t0


def valid_rate(llm: LocalLLM, parent_name: str, proposals: int, grammar: bool, max_tokens: int):
    parent = dsl.parse(RULES[parent_name])
    system = ("You are an expert in deep-learning optimization. You write optimizer update rules in a small "
              "Python-like DSL. Reply with exactly one complete program in a ```python code block.\n\n"
              + dsl.reference_text())
    user = (f"Here is the update rule {parent.name}:\n```python\n{parent.source()}```\n"
            "Propose one modified version of it that might train neural networks faster. Keep the same "
            "signature. Reply with only the program.")
    rq = ChatRequest(messages=[Message(role="system", content=system), Message(role="user", content=user)],
                     temperature=0.8, top_p=0.95, max_tokens=max_tokens, seed=0, n=proposals,
                     grammar="dsl" if grammar else None,
                     grammar_names=dsl_grammar_names(parent) if grammar else None, purpose="mutate")
    t0 = time.perf_counter()
    r = llm.chat([rq])[0]
    wall = time.perf_counter() - t0
    ok, changed, reasons = 0, 0, {}
    for text in r.texts:
        progs = []
        for c in extract_candidates(text):
            try:
                progs.append(dsl.parse(c))
                break
            except dsl.DSLError as e:
                reasons[str(e).split(":")[-1].strip()[:60]] = reasons.get(str(e).split(":")[-1].strip()[:60], 0) + 1
        if not extract_candidates(text):
            reasons["no code in the reply"] = reasons.get("no code in the reply", 0) + 1
        if progs:
            ok += 1
            changed += int(progs[0].body != parent.body or progs[0].hyperparams != parent.hyperparams)
    return ok, changed, len(r.texts), r.completion_tokens, wall, reasons, r.error, r.texts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads while generating (0: torch default)")
    ap.add_argument("--max-tokens", type=int, default=48, help="completion tokens per throughput request")
    ap.add_argument("--batches", default="1,4,16")
    ap.add_argument("--proposals", type=int, default=16, help="mutations per parent and setting")
    ap.add_argument("--proposal-tokens", type=int, default=256)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--no-prefix-sharing", action="store_true", help="compute every row's prompt in full")
    ap.add_argument("--skip-scoring", action="store_true")
    ap.add_argument("--scoring-queries", type=int, default=24)
    ap.add_argument("--shared-batches", default="1,16", help="B for the shared-system-prompt table")
    ap.add_argument("--skip-proposals", action="store_true")
    ap.add_argument("--show", action="store_true", help="print the proposals")
    args = ap.parse_args()

    llm = LocalLLM(args.model, batch_size=16, threads=None if args.threads == 0 else args.threads,
                   prefix_sharing=not args.no_prefix_sharing)
    t0 = time.perf_counter()
    lm = llm.warmup()
    print(f"# machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"torch {torch.__version__}, {llm.threads or torch.get_num_threads()} thread(s); device {lm.device}")
    print(f"# model: {llm.identity()['model']} loaded in {time.perf_counter() - t0:.1f} s (from {lm.source})")
    llm.chat([ChatRequest(messages=[Message(role="user", content="Hi")], max_tokens=2, temperature=0.0)])  # warm-up

    if not args.skip_throughput:
        print("\n## tokens/s, one chat() call of B requests (batched generation)")
        print(f"{'B':>3} {'tokens':>7} {'wall s':>8} {'tokens/s':>9} {'x vs B=1':>9}")
        base = None
        for b in [int(x) for x in args.batches.split(",")]:
            tps, toks, wall = throughput(llm, b, args.max_tokens)
            base = base or tps
            print(f"{b:>3} {toks:>7} {wall:>8.1f} {tps:>9.1f} {tps / base:>9.2f}", flush=True)
        print("\n## tokens/s, B requests sharing the search's system prompt (DSL reference), one chat() call")
        print(f"{'B':>3} {'prefix':>7} {'tokens':>7} {'wall s':>8} {'tokens/s':>9} {'x vs B=1':>9} "
              f"{'prefill saved':>14}")
        for sharing in ((False, True) if not args.no_prefix_sharing else (False,)):
            llm.prefix_sharing = sharing
            base = None
            for b in [int(x) for x in args.shared_batches.split(",")]:
                tps, toks, wall, saved = shared_throughput(llm, b, args.max_tokens)
                base = base or tps
                print(f"{b:>3} {'shared' if sharing else 'full':>7} {toks:>7} {wall:>8.1f} {tps:>9.1f} "
                      f"{tps / base:>9.2f} {saved:>14}", flush=True)
        llm.prefix_sharing = not args.no_prefix_sharing

    if not args.skip_scoring:
        print(f"\n## label scoring (logprobs): {args.scoring_queries} prompts x 4 label variants")
        for sharing in ((False, True) if not args.no_prefix_sharing else (False,)):
            llm.prefix_sharing = sharing
            wall = label_scoring(llm, args.scoring_queries)
            print(f"prompt pass {'once per prompt' if sharing else 'once per pair  '}: {wall:6.1f} s "
                  f"({args.scoring_queries * 4 / wall:.1f} pairs/s)", flush=True)
        llm.prefix_sharing = not args.no_prefix_sharing

    if not args.skip_proposals:
        print(f"\n## valid proposals (pass dsl.parse), {args.proposals} mutations per parent, batched")
        print(f"{'parent':<8} {'grammar':<8} {'valid':>7} {'changed':>8} {'tokens':>7} {'wall s':>7}  top refusals")
        for parent in ("adamw", "lion"):
            for grammar in (False, True):
                ok, changed, n, toks, wall, reasons, err, texts = valid_rate(llm, parent, args.proposals, grammar,
                                                                             args.proposal_tokens)
                top = "; ".join(f"{k} x{v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:2])
                print(f"{parent:<8} {'dsl' if grammar else 'none':<8} {ok:>3}/{n:<3} {changed:>8} {toks:>7} "
                      f"{wall:>7.1f}  {top}{'  ERROR ' + err if err else ''}", flush=True)
                if args.show:
                    for t in texts:
                        print("-----\n" + t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
