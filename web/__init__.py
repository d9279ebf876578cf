"""HTTP plumbing between Connexion and the handlers: injection, transactions, errors, security."""
