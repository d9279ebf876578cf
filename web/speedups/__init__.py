"""Pure speedups of the Connexion/Flask stack, switched on or off as a whole (APP_SPEEDUPS): same behaviour, less CPU."""
