"""End-to-end tier: serve.py processes, nginx, containers, Chromium, generated clients, Node."""
