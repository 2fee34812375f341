"""p2p-eval."""
