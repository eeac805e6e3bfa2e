"""Safe rollouts: the controller that moves a candidate through shadow and canary to live."""
