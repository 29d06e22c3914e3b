"""The ledger: what was claimed, sent and decided, per plan, so a plan is executed at most once.

``protocol`` holds the value types, the claim rules and the protocols that operators use;
``memory`` (one process's lifetime) and ``sqlite`` (durable, the default) implement them.
"""
