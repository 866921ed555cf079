"""Synthetic users whose planted interests shift at known times (DESIGN.md §7).

Real logs never say when a user's taste changed, so drift tracking cannot be scored
on them. Here we plant the answer: every user walks through a schedule of phases,
each phase a weighted mix of one or two catalog categories, and the phase changes
happen at recorded timestamps. Tracking metrics (`evals.tracking`) then compare the
profiles a model writes against this truth.

The catalog is fixed text (real titles and one-sentence descriptions, composed
from per-category parts) so the embedder and the LLM read something meaningful;
only the users depend on the seed. The same seed always gives the same data, and
the users of `generate(n, seed)` are a prefix of those of `generate(n + k, seed)`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from evals.types import Dataset, Interaction, ItemInfo

BASE_TS = 1_704_067_200  # 2024-01-01 00:00:00 UTC: every synthetic history starts here
HOUR = 3_600
DAY = 24 * HOUR


@dataclass(frozen=True)
class PlantedPhase:
    """One stretch of a user's history with a known interest mix.

    The phase covers `start_ts <= ts < end_ts`; `start_event` is how many of the
    user's events came before it, so lags can be counted in events, not seconds.
    """

    start_ts: int
    end_ts: int
    categories: dict[str, float]  # category -> weight; weights sum to 1
    start_event: int

    @property
    def main(self) -> str:
        """The category a good tracker should rank first (heaviest; ties by name)."""
        return min(self.categories, key=lambda c: (-self.categories[c], c))

    def contains(self, ts: int) -> bool:
        return self.start_ts <= ts < self.end_ts


@dataclass
class SyntheticData:
    dataset: Dataset
    truth: dict[str, list[PlantedPhase]]  # user -> phases, in time order
    categories: dict[str, str]  # category name -> natural description
    item_category: dict[str, str]  # item id -> category name


@dataclass(frozen=True)
class _Category:
    name: str
    description: str
    # (title, description phrase, tag) per product line; each crossed with every variant.
    lines: tuple[tuple[str, str, str], ...]
    variants: tuple[tuple[str, str], ...]  # (title suffix, description phrase)


_CATEGORIES: tuple[_Category, ...] = (
    _Category(
        "jazz records",
        "Jazz records: modal, bebop and hard bop albums, saxophone, trumpet and piano trio "
        "recordings on vinyl.",
        (
            ("Blue Hour at the Lantern", "a modal jazz album by the Mara Lindqvist Quartet",
             "modal jazz"),
            ("Smoke Over Canal Street", "a hard bop session led by tenor saxophonist Theo Okafor",
             "hard bop"),
            ("Brushes and Brass", "a cool jazz record from trumpeter Delphine Ruiz", "cool jazz"),
            ("Late Set in D Minor", "a piano trio date by the August Vance Trio", "piano trio"),
            ("Tidewater Suite", "a post-bop suite for saxophone and strings by Nadia Brooks",
             "post-bop"),
            ("Eleven Bars for Monk", "a bebop tribute album by the Harlan Ode Quintet", "bebop"),
            ("Walking the Upright", "a bassist-led jazz album by Solomon Achebe", "upright bass"),
            ("Midnight Flugelhorn", "a ballad-heavy jazz record by Ines Carvalho", "jazz ballads"),
        ),
        (
            ("180g Vinyl LP", "pressed on heavyweight vinyl with the original liner notes"),
            ("Remastered Reissue", "remastered from the analogue tapes with two unreleased takes"),
            ("Live at the Blue Door", "recorded live in a small club with long improvised solos"),
        ),
    ),
    _Category(
        "hiking gear",
        "Hiking gear: backpacks, trail boots, trekking poles, tents and rain shells for "
        "mountain trails and backpacking trips.",
        (
            ("Ridgeline 45L Backpack",
             "a lightweight hiking backpack with a ventilated back panel", "backpack"),
            ("Switchback Trail Boots", "waterproof leather hiking boots with a grippy lug sole",
             "boots"),
            ("Summit Carbon Trekking Poles",
             "collapsible trekking poles that save the knees on steep descents", "trekking poles"),
            ("Cairn Two-Person Tent", "a freestanding backpacking tent that pitches in minutes",
             "tent"),
            ("Timberline Rain Shell", "a breathable waterproof hiking jacket with pit zips",
             "rain jacket"),
            ("Alpine Glow Headlamp", "a rechargeable headlamp for pre-dawn starts on the trail",
             "headlamp"),
            ("Scree Gaiters", "ankle gaiters that keep gravel and snow out of hiking boots",
             "gaiters"),
            ("Trailhead Water Filter",
             "a squeeze filter for drinking from streams on backcountry hikes", "water filter"),
        ),
        (
            ("Slate", "in slate grey, tested on multi-day mountain treks"),
            ("Moss", "in moss green, built for wet forest trails"),
            ("Ember", "in ember orange, easy to spot on a foggy ridge"),
        ),
    ),
    _Category(
        "baking",
        "Baking: sourdough bread, cakes, croissants, tarts and cookies, with baking books, "
        "bakeware and proofing tools for the home baker.",
        (
            ("Wild Yeast Sourdough Starter Kit",
             "a kit for keeping a naturally leavened sourdough starter alive", "sourdough"),
            ("Butter and Folds", "a baking book on croissants, puff pastry and laminated dough",
             "pastry"),
            ("Enamelled Bread Cloche", "a lidded pot that bakes crusty bread loaves at high heat",
             "bread"),
            ("Fluted Tart Tin Set", "loose-bottomed tart tins for pastry shells and fruit tarts",
             "tarts"),
            ("Rattan Proofing Basket", "a banneton that shapes and proofs bread dough overnight",
             "proofing"),
            ("The Layer Cake Handbook",
             "a baking book of sponges, buttercreams and celebration cakes", "cakes"),
            ("Brown Butter Cookie Collection",
             "a recipe collection for chewy cookies and shortbread", "cookies"),
            ("Bench Scraper and Lame Set",
             "a dough scraper and scoring blade for shaping and slashing loaves", "bread tools"),
        ),
        (
            ("Home Baker Edition", "made for everyday baking in a home oven"),
            ("Weekend Project Edition", "suited to long, slow bakes on weekend mornings"),
            ("Holiday Edition", "ready for festive bakes like stollen and gingerbread"),
        ),
    ),
    _Category(
        "chess",
        "Chess: opening repertoires, endgame studies, tactics puzzles, chess books, boards and "
        "clocks for tournament players.",
        (
            ("The Najdorf Unmasked",
             "an opening book that maps the sharpest lines of the Sicilian Najdorf", "openings"),
            ("Rook Endings Without Tears",
             "a study of the rook endgames every tournament player must know", "endgames"),
            ("Forks, Pins and Skewers", "a chess tactics workbook of combination puzzles",
             "tactics"),
            ("Weighted Staunton Chess Set",
             "a tournament-size Staunton chess set with felted pieces", "chess set"),
            ("Increment Pro Chess Clock", "a digital chess clock with increment and delay modes",
             "chess clock"),
            ("Storming the Castled King",
             "a chess middlegame guide to pawn storms and king attacks", "middlegame"),
            ("The Queen's Gambit Declined in Depth",
             "an opening monograph on solid chess replies to 1.d4", "openings"),
            ("Checkmate Patterns Drill Book", "a puzzle book drilling classic mating patterns",
             "puzzles"),
        ),
        (
            ("Club Edition", "chosen by club players preparing for weekend tournaments"),
            ("Study Edition", "meant for quiet study between rated games"),
            ("Travel Edition", "compact enough to take to away matches"),
        ),
    ),
    _Category(
        "gardening",
        "Gardening: vegetable beds, seeds, compost, pruning tools and flowering perennials for "
        "people who grow plants at home.",
        (
            ("Heirloom Tomato Seed Collection",
             "heirloom tomato seeds for summer vegetable beds", "seeds"),
            ("Raised Cedar Garden Bed", "a raised cedar bed for growing vegetables in rich soil",
             "raised bed"),
            ("Bypass Pruning Shears", "sharp secateurs for pruning roses, shrubs and fruit trees",
             "pruning"),
            ("Hot Compost Bin", "an insulated composter that turns kitchen scraps into compost",
             "compost"),
            ("Pollinator Perennial Plug Pack",
             "young flowering perennials that bring bees and butterflies to borders",
             "perennials"),
            ("Soaker Hose Irrigation Kit",
             "a drip hose that waters vegetable beds and garden borders", "watering"),
            ("Hori Hori Weeding Knife", "a serrated garden knife for weeding and planting bulbs",
             "weeding"),
            ("Seed Starting Heat Mat",
             "a warming mat that helps seedlings sprout indoors in spring", "seedlings"),
        ),
        (
            ("Allotment Edition", "sized for allotment plots and big vegetable gardens"),
            ("Balcony Edition", "scaled for container gardening on a balcony"),
            ("Cottage Garden Edition", "picked for informal cottage garden borders"),
        ),
    ),
    _Category(
        "science fiction novels",
        "Science fiction novels: space opera, first contact, time travel, cyberpunk and "
        "dystopian future stories.",
        (
            ("The Orbit of Salt",
             "a space opera novel about a mining colony circling a dying star", "space opera"),
            ("Signals from Kepler's Gap",
             "a first-contact novel in which astronomers decode an alien message",
             "first contact"),
            ("The Clockmaker's Paradox",
             "a time-travel novel about a watchmaker who keeps rewriting one afternoon",
             "time travel"),
            ("Glass Cities", "a dystopian novel set in domed cities ruled by an algorithm",
             "dystopia"),
            ("Generation Ship Hesper",
             "a novel following the fifth generation born aboard a slow starship",
             "generation ship"),
            ("The Martian Water Wars", "a hard science fiction novel about terraforming Mars",
             "hard sci-fi"),
            ("Neon Ghosts", "a cyberpunk novel of hackers and rogue AIs in a drowned megacity",
             "cyberpunk"),
            ("The Last Android Poet",
             "a literary science fiction novel narrated by a robot who writes verse", "robots"),
        ),
        (
            ("Paperback", "in a pocket paperback edition"),
            ("Collector's Hardcover", "as a signed hardcover with star-map endpapers"),
            ("Book One of a Trilogy", "opening a trilogy set in the same imagined future"),
        ),
    ),
    _Category(
        "road cycling",
        "Road cycling: road bikes, carbon wheels, cycling jerseys, bike computers and training "
        "for long rides and races on tarmac.",
        (
            ("Aero Carbon Road Frame", "a stiff carbon road bike frame built for fast group rides",
             "road bike"),
            ("Climber 35mm Carbon Wheelset", "lightweight carbon road wheels for hilly sportives",
             "wheels"),
            ("Gran Fondo Bib Shorts", "padded cycling bib shorts for long road rides in the saddle",
             "cycling kit"),
            ("Peloton Team Jersey", "a breathable road cycling jersey with three rear pockets",
             "jersey"),
            ("Cadence GPS Bike Computer",
             "a handlebar GPS computer showing power, cadence and route maps", "bike computer"),
            ("Power Meter Crankset",
             "a crankset that measures pedalling power in watts for structured training",
             "power meter"),
            ("Clipless Road Pedals", "carbon clipless cycling pedals with cleats", "pedals"),
            ("Tubeless Road Tyres", "puncture-resistant road bike tyres with a fast rolling tread",
             "tyres"),
        ),
        (
            ("Race Edition", "set up for criterium racing and fast chain-gang rides"),
            ("Endurance Edition", "tuned for comfortable century rides"),
            ("Climbing Edition", "trimmed for steep road climbs on race day"),
        ),
    ),
    _Category(
        "photography",
        "Photography: digital and film cameras, lenses, tripods, filters and photo books for "
        "landscape, portrait and street photographers.",
        (
            ("Mirrorless Camera Body", "a full-frame mirrorless camera with in-body stabilisation",
             "camera"),
            ("50mm f/1.8 Prime Lens",
             "a fast prime lens for portraits with soft background blur", "lens"),
            ("Carbon Travel Tripod", "a compact tripod for long exposures and landscape photos",
             "tripod"),
            ("Variable ND Filter", "a neutral density lens filter for smoothing waterfalls",
             "filters"),
            ("Street Light at Dusk", "a photo book of candid street photography", "street"),
            ("Portrait Softbox Kit", "a softbox and flash kit for studio portrait photography",
             "lighting"),
            ("Rangefinder 35mm Film Camera", "a refurbished film camera with a bright viewfinder",
             "film"),
            ("Golden Hour Field Guide",
             "a guide to composing landscape photographs in evening light", "landscape"),
        ),
        (
            ("Starter Kit", "bundled for beginners learning exposure and focus"),
            ("Pro Edition", "specified for working photographers"),
            ("Travel Edition", "packed light for photography trips"),
        ),
    ),
    _Category(
        "aquarium keeping",
        "Aquarium keeping: freshwater fish tanks, filters, aquatic plants and tropical fish "
        "care for home aquarists.",
        (
            ("Planted Nano Aquarium", "a small glass fish tank for a planted tropical aquascape",
             "aquarium"),
            ("Canister Aquarium Filter", "a quiet external filter that keeps tank water clear",
             "filtration"),
            ("Neon Tetra Care Guide", "a fishkeeping guide to shoaling tetras and community tanks",
             "tropical fish"),
            ("Betta Fish Starter Set", "a heated tank setup for keeping a single betta fish",
             "betta"),
            ("Aquarium LED Plant Light", "a full-spectrum light that grows aquatic plants",
             "aquarium lighting"),
            ("Freshwater Test Strip Kit",
             "test strips that check ammonia, nitrite and pH in fish tanks", "water testing"),
            ("Java Fern and Moss Bundle", "hardy aquatic plants to tie onto aquarium driftwood",
             "aquatic plants"),
            ("Cichlid Rockscape Stones", "stacking stones for African cichlid aquarium layouts",
             "cichlids"),
        ),
        (
            ("Beginner Edition", "for first-time fishkeepers cycling their first tank"),
            ("Aquascaper Edition", "chosen by aquascapers building planted layouts"),
            ("Breeder Edition", "for hobbyists breeding tropical fish"),
        ),
    ),
    _Category(
        "knitting",
        "Knitting: wool yarn, knitting needles, sweater and sock patterns and stitch guides for "
        "hand knitters.",
        (
            ("Merino Worsted Yarn", "a soft merino wool yarn for knitting sweaters and hats",
             "yarn"),
            ("Bamboo Circular Needles", "smooth circular knitting needles for working in the round",
             "needles"),
            ("Fair Isle Yoke Sweater Pattern",
             "a colourwork sweater pattern with a stranded Fair Isle yoke", "colourwork"),
            ("Toe-Up Sock Pattern Book", "a book of sock knitting patterns worked from the toe up",
             "socks"),
            ("Cable Stitch Dictionary", "a reference of cable and twisted knitting stitches",
             "cables"),
            ("Hand-Dyed Sock Yarn", "a speckled hand-dyed wool blend for knitting socks",
             "sock yarn"),
            ("Chunky Blanket Kit", "bulky yarn and a pattern for a cabled knitted blanket",
             "blankets"),
            ("Lace Shawl Pattern Collection",
             "patterns for airy lace shawls knitted in fine mohair", "lace"),
        ),
        (
            ("Beginner Edition", "with clear charts for new knitters"),
            ("Heirloom Edition", "for slow projects meant to be handed down"),
            ("Winter Edition", "with warm designs for cold-weather knitting"),
        ),
    ),
)


def _slug(name: str) -> str:
    return name.replace(" ", "-")


def catalog() -> tuple[dict[str, ItemInfo], dict[str, str]]:
    """Every item and every category description; fixed, independent of any seed."""
    items: dict[str, ItemInfo] = {}
    for cat in _CATEGORIES:
        n = 0
        for title, phrase, tag in cat.lines:
            for suffix, variant_phrase in cat.variants:
                item_id = f"{_slug(cat.name)}-{n:02d}"
                items[item_id] = ItemInfo(
                    item_id=item_id,
                    title=f"{title} ({suffix})",
                    genres=(cat.name,),
                    tags=(tag, suffix.lower()),
                    description=f"{phrase[0].upper()}{phrase[1:]}, {variant_phrase}.",
                )
                n += 1
    return items, {cat.name: cat.description for cat in _CATEGORIES}


def _plan_phases(rng: random.Random, names: list[str], n_phases: int,
                 two_category_share: float) -> list[dict[str, float]]:
    """Weighted category mixes; each phase's main category is new to the user's last phase,
    so every change is a real shift a tracker must notice."""
    mixes: list[dict[str, float]] = []
    for _ in range(n_phases):
        previous = set(mixes[-1]) if mixes else set()
        main = rng.choice([c for c in names if c not in previous])
        if rng.random() < two_category_share:
            second = rng.choice([c for c in names if c != main])
            w = round(rng.uniform(0.6, 0.8), 2)
            mixes.append({main: w, second: round(1.0 - w, 2)})
        else:
            mixes.append({main: 1.0})
    return mixes


def _phase_draws(rng: random.Random, mix: dict[str, float], others: list[str], n: int,
                 noise_share: float) -> list[tuple[str, bool]]:
    """The categories of a phase's events, as (category, is_noise), in random order.

    Counts follow the weights exactly (largest remainder) rather than by chance, so
    even a short phase really is led by its main category and the truth is sound.
    """
    n_noise = round(n * noise_share)
    n_planted = n - n_noise
    shares = {c: w * n_planted for c, w in mix.items()}
    counts = {c: int(s) for c, s in shares.items()}
    by_remainder = sorted(mix, key=lambda c: (-(shares[c] - counts[c]), -mix[c], c))
    for c in by_remainder[: n_planted - sum(counts.values())]:
        counts[c] += 1
    draws = [(c, False) for c in mix for _ in range(counts[c])]
    draws += [(rng.choice(others), True) for _ in range(n_noise)]
    rng.shuffle(draws)
    return draws


def _rating(rng: random.Random, planted: bool) -> float:
    """Planted items are mostly liked (4-5); noise items mostly disliked, so avoid facets
    have something to form from and positives stay on the planted categories."""
    if planted:
        return float(rng.choices((5, 4, 3), weights=(0.45, 0.4, 0.15))[0])
    return float(rng.choices((1, 2, 3, 4), weights=(0.35, 0.35, 0.2, 0.1))[0])


def _gap(rng: random.Random) -> int:
    """Seconds to the next event: median about eight hours, from one hour to four days."""
    return int(min(max(rng.lognormvariate(0.0, 1.0) * 8 * HOUR, HOUR), 4 * DAY))


def generate(n_users: int, seed: int, *, phases: tuple[int, int] = (2, 3),
             events_per_phase: tuple[int, int] = (15, 30), noise_share: float = 0.1,
             two_category_share: float = 0.5, base_ts: int = BASE_TS) -> SyntheticData:
    """Users with planted, shifting interests over the fixed catalog.

    `phases` and `events_per_phase` are inclusive ranges drawn per user and per phase.
    A share `noise_share` of events come from categories outside the current phase.
    """
    if n_users < 0:
        raise ValueError("n_users must be >= 0")
    if not 0.0 <= noise_share < 1.0:
        raise ValueError("noise_share must be in [0, 1)")
    items, categories = catalog()
    by_category: dict[str, list[str]] = {}
    for info in items.values():
        by_category.setdefault(info.genres[0], []).append(info.item_id)
    names = list(categories)

    rows: list[tuple[int, str, str, float]] = []
    truth: dict[str, list[PlantedPhase]] = {}
    for idx in range(n_users):
        user = f"synth-u{idx:04d}"
        # One generator per user: a user's data depends only on (seed, idx).
        rng = random.Random(f"synthetic:{seed}:{idx}")
        mixes = _plan_phases(rng, names, rng.randint(*phases), two_category_share)
        seen: set[str] = set()
        ts = base_ts + rng.randint(0, 7 * DAY)
        n_events = 0
        starts: list[tuple[int, int]] = []
        for mix in mixes:
            starts.append((ts, n_events))
            others = [c for c in names if c not in mix]
            for category, is_noise in _phase_draws(rng, mix, others,
                                                   rng.randint(*events_per_phase), noise_share):
                pool = [i for i in by_category[category] if i not in seen] or by_category[category]
                item = rng.choice(pool)
                seen.add(item)
                rows.append((ts, user, item, _rating(rng, not is_noise)))
                n_events += 1
                ts += _gap(rng)
        last_ts = ts  # one gap past the final event: the end of the last phase
        ends = [start for start, _ in starts[1:]] + [last_ts]
        truth[user] = [PlantedPhase(start, end, dict(mix), first)
                       for (start, first), end, mix in zip(starts, ends, mixes, strict=True)]

    rows.sort(key=lambda r: (r[0], r[1]))
    interactions = [Interaction(user=u, item=i, ts=t, rating=r, seq=n)
                    for n, (t, u, i, r) in enumerate(rows)]
    item_category = {item_id: info.genres[0] for item_id, info in items.items()}
    return SyntheticData(
        dataset=Dataset(name=f"synthetic-s{seed}", interactions=interactions, items=items),
        truth=truth, categories=categories, item_category=item_category,
    )


def user_events(data: SyntheticData) -> Mapping[str, list[Interaction]]:
    """Each user's events in time order, the view a replay works from."""
    out: dict[str, list[Interaction]] = {user: [] for user in data.truth}
    for row in data.dataset.interactions:
        out[row.user].append(row)
    return out
