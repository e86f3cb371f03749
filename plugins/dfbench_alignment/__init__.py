"""dfbench's built-in alignment losses: Proxy-Anchor with teacher proxies, and paired InfoNCE."""
