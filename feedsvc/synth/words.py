"""The fixed word lists and shape tables every synthetic corpus draws from.

Plain data, the same for every seed: which words, awkward tokens, topic
names, domains, provider name styles, categories and image sizes a record can
be made of, and how many images and related items it may carry. The seed
only decides which of them a corpus uses and how often (`vocabulary.py`).
"""

from __future__ import annotations

# Plain lower-case ASCII vocabulary: text, URL slugs and provider domains.
WORDS: tuple[str, ...] = tuple(
    """
    police facial recognition database driver licence privacy campaigners clause
    criminal justice bill minister surveillance commissioner biometrics cameras crowd
    court ruling government data protection regulator algorithm bias accuracy trial
    deployment council city streets retail stores airport border passport scheme
    contract supplier vendor study researchers university sensors wireless voice
    muscle movement dataset open model training benchmark startup funding chip cloud
    platform update release security breach leak hackers ransomware patch network
    outage energy battery climate report election campaign satellite launch rocket
    vaccine hospital patients doctors robots factory workers union strike market
    shares investors bank lending inflation housing prices schools teachers exams
    drone camera software hardware quantum processor memory smartphone browser search
    engine app store subscription streaming music film festival football league
    transfer weather storm flood wildfire drought harvest farmers water pipeline
    """.split()
)

# Occasional tokens that exercise YAML quoting and non-ASCII text: quotes,
# backslashes, colons, ampersands, typographic punctuation and other scripts.
SPICE: tuple[str, ...] = (
    '"exclusive"',
    '"no plans"',
    "AT&T",
    "50%",
    "#1",
    "Zürich",
    "café",
    "naïve",
    "São Paulo",
    "Kraków",
    "driver’s",
    "—",
    "C:\\data",
    "a\\b",
    "Q&A:",
    "[update]",
    "{draft}",
    "it's",
    "100,000",
    "2.0",
    "–",
    "Москва",
    "東京",
    "résumé",
)
SPICE_RATE = 0.05  # share of pool phrases carrying one SPICE token

# Named topics in several scripts, interleaved so that even a small vocabulary
# keeps some non-Latin names; "Topic N" fills the rest up to the requested size.
NAMED_TOPICS: tuple[str, ...] = (
    "AI",
    "Computer Vision",
    "Künstliche Intelligenz",
    "Privacy",
    "人工知能",
    "Security",
    "Vie privée",
    "Policy",
    "Право",
    "Biometrics",
    "الذكاء الاصطناعي",
    "Robotics",
    "Seguridad",
    "Machine Learning",
    "Cloud",
    "Chips",
    "Startups",
    "Energy",
    "Climate",
    "Health",
    "Transport",
    "Space",
    "Open Source",
    "Mobile",
    "Web",
    "Data",
    "Finance",
    "Law",
    "Education",
    "Media",
    "Gaming",
    "Quantum",
    "Networking",
    "Hardware",
    "Science",
    "Surveillance",
    "Smart Cities",
    "Drones",
    "Ethics",
    "Research",
    "Retail",
    "Automotive",
    "Telecom",
    "Crypto",
    "Agriculture",
    "Manufacturing",
    "Defense",
    "Elections",
    "Datenschutz",
    "Intelligence artificielle",
    "Кибербезопасность",
    "ロボット",
    "الخصوصية",
    "Inteligencia artificial",
    "Ciberseguridad",
    "Gesundheit",
)

TLDS: tuple[str, ...] = (
    "com",
    "com",
    "com",
    "co.uk",
    "net",
    "org",
    "io",
    "de",
    "fr",
    "news",
    "com.au",
    "jp",
    "es",
    "it",
    "ca",
    "in",
    "tech",
    "ru",
    "ae",
)
NAME_STYLES: tuple[str, ...] = (
    "{W}",
    "{W} News",
    "The {W} Times",
    "{W} Daily",
    "{W} Update",
    "{W} Wire",
    "The {W}",
    "{W}'s Review",
    "news.{w}",
    "{W} Zeitung",
    "Le {W}",
    "{W} Über",
    'The "{W}" Post',
    "{W} \\ Tech",
)

CATEGORIES: tuple[str, ...] = ("news", "news", "news", "analysis", "opinion", "review")
TYPES: tuple[str, ...] = ("article", "article", "article", "video", "podcast")
IMAGE_SIZES: tuple[tuple[int, int], ...] = (
    (1200, 675),
    (620, 372),
    (2048, 1333),
    (2560, 1440),
    (619, 377),
    (800, 450),
)
IMAGE_COUNTS: tuple[int, ...] = (0, 1, 1, 1, 2, 3)
RELATED_COUNTS: tuple[int, ...] = (0, 1, 2, 3, 3, 4, 5)
RELATED_IMAGE_COUNTS: tuple[int, ...] = (0, 0, 1, 1, 1, 2)
