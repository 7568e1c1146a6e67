"""Small word lists written for the project (nothing is downloaded)."""
from __future__ import annotations

#: (singular, plural) pairs: regular, -es, -y -> -ies, -f -> -ves and irregular forms.
PLURALS: list[tuple[str, str]] = [
    ("cat", "cats"), ("dog", "dogs"), ("book", "books"), ("tree", "trees"), ("car", "cars"),
    ("apple", "apples"), ("river", "rivers"), ("chair", "chairs"), ("window", "windows"), ("bird", "birds"),
    ("garden", "gardens"), ("hat", "hats"), ("lamp", "lamps"), ("door", "doors"), ("table", "tables"),
    ("flower", "flowers"), ("road", "roads"), ("cloud", "clouds"), ("stone", "stones"), ("ship", "ships"),
    ("horse", "horses"), ("pencil", "pencils"), ("shirt", "shirts"), ("cup", "cups"), ("bottle", "bottles"),
    ("house", "houses"), ("song", "songs"), ("friend", "friends"), ("farm", "farms"), ("planet", "planets"),
    ("box", "boxes"), ("bus", "buses"), ("glass", "glasses"), ("dish", "dishes"), ("church", "churches"),
    ("fox", "foxes"), ("brush", "brushes"), ("watch", "watches"), ("class", "classes"), ("bench", "benches"),
    ("city", "cities"), ("baby", "babies"), ("lady", "ladies"), ("story", "stories"), ("party", "parties"),
    ("berry", "berries"), ("country", "countries"), ("puppy", "puppies"), ("family", "families"),
    ("cherry", "cherries"), ("leaf", "leaves"), ("knife", "knives"), ("wolf", "wolves"), ("shelf", "shelves"),
    ("man", "men"), ("woman", "women"), ("child", "children"), ("mouse", "mice"), ("foot", "feet"),
    ("tooth", "teeth"), ("goose", "geese"), ("person", "people"), ("ox", "oxen"), ("toy", "toys"),
    ("key", "keys"), ("day", "days"), ("boy", "boys"), ("monkey", "monkeys"), ("valley", "valleys"),
    ("potato", "potatoes"), ("tomato", "tomatoes"), ("hero", "heroes"), ("echo", "echoes"),
]

#: Plain English words (for first letter, spelling, sorting).
WORDS: list[str] = sorted({
    "apple", "river", "mountain", "garden", "window", "candle", "pencil", "orange", "bridge", "forest",
    "castle", "rabbit", "dragon", "silver", "winter", "summer", "planet", "rocket", "yellow", "purple",
    "guitar", "button", "basket", "kitten", "turtle", "island", "jacket", "ladder", "magnet", "needle",
    "pocket", "quiet", "violin", "wagon", "zebra", "anchor", "barrel", "cactus", "desert", "engine",
    "falcon", "goblin", "harbor", "igloo", "jungle", "kettle", "lemon", "marble", "nickel", "oyster",
    "parrot", "quilt", "ribbon", "saddle", "tunnel", "umbrella", "velvet", "walnut", "yogurt", "zipper",
    "table", "chair", "cloud", "stone", "horse", "house", "lamp", "tiger", "piano", "ocean", "bread",
    "cheese", "honey", "music", "paper", "plant", "sugar", "water", "green", "happy", "light", "night",
    "money", "grass", "earth", "flame", "ghost", "heart", "juice", "knife", "lunch", "mouse", "nurse",
    "olive", "queen", "radio", "snake", "train", "uncle", "voice", "whale", "youth", "bell", "fish",
    "gold", "hill", "iron", "jump", "kite", "lion", "moon", "nest", "owl", "pig", "rain", "star",
    "tent", "vase", "wind", "yard", "zoo", "ant", "bee", "cow", "duck", "egg", "fox", "goat", "hen",
    "ink", "jar", "king", "leg", "map", "nut", "oak", "pen", "rug", "sun", "toy", "van", "web",
})

#: Antonym pairs (each pair is used in one direction only, so splits never leak).
ANTONYMS: list[tuple[str, str]] = [
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"),
    ("high", "low"), ("old", "young"), ("open", "closed"), ("full", "empty"), ("early", "late"),
    ("strong", "weak"), ("rich", "poor"), ("hard", "soft"), ("wet", "dry"), ("clean", "dirty"),
    ("up", "down"), ("in", "out"), ("true", "false"), ("win", "lose"), ("love", "hate"),
    ("begin", "end"), ("buy", "sell"), ("push", "pull"), ("give", "take"), ("come", "go"),
    ("long", "short"), ("thick", "thin"), ("wide", "narrow"), ("deep", "shallow"), ("heavy", "light"),
    ("loud", "quiet"), ("sweet", "sour"), ("brave", "cowardly"), ("cheap", "expensive"), ("safe", "dangerous"),
    ("friend", "enemy"), ("day", "night"), ("north", "south"), ("east", "west"), ("left", "right"),
    ("above", "below"), ("before", "after"), ("always", "never"), ("first", "last"), ("inside", "outside"),
    ("alive", "dead"), ("awake", "asleep"), ("tall", "short"), ("good", "bad"), ("right", "wrong"),
    ("near", "far"), ("easy", "difficult"), ("polite", "rude"), ("simple", "complex"), ("sharp", "dull"),
    ("smooth", "rough"), ("tight", "loose"), ("noisy", "silent"), ("question", "answer"), ("accept", "refuse"),
    ("arrive", "leave"), ("laugh", "cry"), ("remember", "forget"), ("increase", "decrease"), ("top", "bottom"),
    ("front", "back"), ("male", "female"), ("success", "failure"), ("victory", "defeat"), ("war", "peace"),
    ("major", "minor"), ("maximum", "minimum"), ("positive", "negative"), ("ancient", "modern"), ("private", "public"),
]

SENTIMENT_POSITIVE: list[str] = [
    "wonderful", "excellent", "great", "fantastic", "delightful", "lovely", "amazing", "brilliant",
    "charming", "superb", "enjoyable", "pleasant", "beautiful", "perfect", "outstanding", "fun",
    "impressive", "marvelous", "terrific", "heartwarming",
]
SENTIMENT_NEGATIVE: list[str] = [
    "terrible", "awful", "horrible", "boring", "dreadful", "disappointing", "poor", "bad", "ugly",
    "annoying", "miserable", "dull", "painful", "mediocre", "unpleasant", "disgusting", "lousy",
    "tedious", "frustrating", "pathetic",
]
SENTIMENT_SUBJECTS: list[str] = [
    "The movie", "This restaurant", "The service", "The hotel room", "Our trip", "The concert", "This book",
    "The food", "The weather", "The new phone", "The staff", "The game", "The show", "My meal", "The park",
]
SENTIMENT_TEMPLATES: list[str] = [
    "{subj} was {adj}.", "{subj} was really {adj}.", "Honestly, {subj_l} was {adj}.",
    "I thought {subj_l} was {adj}.", "{subj} was {adj} from start to finish.",
    "What a {adj} experience; {subj_l} was {adj}.",
]
SENTIMENT_NEGATED: list[str] = [
    "{subj} was not {adj}.", "{subj} was not {adj} at all.", "I would not call {subj_l} {adj}.",
    "Nobody thought {subj_l} was {adj}.", "{subj} was never {adj}.",
]

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
        "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    """English words for 0 <= n < 1000, hyphenated tens (``three hundred forty-two``)."""
    if not 0 <= n < 1000:
        raise ValueError("number_words covers 0..999")
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else "-" + ONES[n % 10])
    rest = n % 100
    head = ONES[n // 100] + " hundred"
    return head if rest == 0 else f"{head} {number_words(rest)}"
