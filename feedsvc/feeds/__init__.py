"""The feed rules, pure: which records go in which feed, in what order, on which archive page."""
