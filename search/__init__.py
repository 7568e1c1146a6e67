"""Search: the evolutionary engine, mutation operators, LLM backends, campaigns, run store, CLI."""

# Public names of the search engine, imported lazily (``import search`` stays cheap for the CLI).
_LAZY = {
    "Campaign": "search.campaign", "CampaignError": "search.campaign", "load_campaign": "search.campaign",
    "parse_campaign": "search.campaign",
    "Engine": "search.engine", "run_campaign": "search.engine", "Individual": "search.engine",
    "Proposal": "search.engine", "Job": "search.engine", "Context": "search.engine", "Operator": "search.engine",
    "Strategy": "search.engine", "KindPlugin": "search.engine", "InvalidCandidate": "search.engine",
    "register_operator": "search.engine", "register_strategy": "search.engine", "register_kind": "search.engine",
    "OPERATORS": "search.engine", "STRATEGIES": "search.engine", "KINDS": "search.engine",
    "RunStore": "search.store", "RunView": "search.store",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")
