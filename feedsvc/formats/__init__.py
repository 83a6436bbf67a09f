"""Documents as bytes: RSS and Atom (feedgen), JSON Feed, HTML pages, OPML, and their registry."""
