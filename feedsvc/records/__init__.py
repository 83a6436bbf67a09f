"""Reading record files: walk the folder, split the front matter, parse the YAML, apply the field rules."""
