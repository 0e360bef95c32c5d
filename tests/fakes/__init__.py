"""Fakes of external SaaS for the tests, speaking the real protocols over real sockets."""
