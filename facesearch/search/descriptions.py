"""The vocabulary of text queries: hand-written descriptions of every class (DESCRIPTIONS), of
some classes' absence (OPPOSITES: "bearded" is NOT No_Beard), and the classes that exclude each
other (EXCLUSIVE_GROUPS). Data only: search/text.py embeds and matches them."""
from __future__ import annotations

from facesearch.spec import AGE_GROUPS, EMOTIONS, ETHNICITIES, GENDERS

#: Natural-language descriptions of every class (the class being present).
DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "5_o_Clock_Shadow": (
        "five o'clock shadow", "stubble", "stubbly", "unshaven", "designer stubble",
        "a few days of stubble", "scruffy stubble",
    ),
    "Arched_Eyebrows": (
        "arched eyebrows", "arched brows", "high arched eyebrows", "curved eyebrows",
        "raised arched brows",
    ),
    "Attractive": (
        "attractive", "beautiful", "handsome", "good-looking", "pretty", "gorgeous", "cute",
        "lovely face",
    ),
    "Bags_Under_Eyes": (
        "bags under the eyes", "eye bags", "puffy eyes", "dark circles under the eyes",
        "tired-looking eyes", "under-eye bags",
    ),
    "Bald": ("bald", "bald head", "hairless head", "shaved head", "hairless", "balding", "bald-headed"),
    "Bangs": ("bangs", "a fringe", "fringe haircut", "hair covering the forehead", "with bangs"),
    "Big_Lips": ("big lips", "full lips", "thick lips", "plump lips", "large lips", "fleshy lips"),
    "Big_Nose": ("big nose", "large nose", "long nose", "prominent nose", "huge nose", "wide nose"),
    "Black_Hair": (
        "black hair", "dark hair", "dark-haired", "jet black hair", "raven hair", "black-haired",
        "ebony hair", "dark locks",
    ),
    "Blond_Hair": (
        "blond hair", "blonde hair", "blonde", "blond", "fair-haired", "golden hair",
        "platinum blonde", "light blonde hair", "yellow hair", "golden locks", "towhead",
    ),
    "Blurry": (
        "blurry", "blurred photo", "out of focus", "low quality image", "fuzzy picture",
        "unfocused photo", "motion blur",
    ),
    "Brown_Hair": (
        "brown hair", "brunette", "brown-haired", "chestnut hair", "light brown hair",
    ),
    "Bushy_Eyebrows": (
        "bushy eyebrows", "thick eyebrows", "heavy brows", "bushy brows", "dense eyebrows",
        "unibrow",
    ),
    "Chubby": (
        "chubby", "fat", "overweight", "plump", "chubby face", "round full cheeks", "heavy-set",
    ),
    "Double_Chin": (
        "double chin", "a second chin", "saggy chin", "jowls", "fleshy neck under the chin",
    ),
    "Eyeglasses": (
        "eyeglasses", "glasses", "specs", "spectacles", "wearing glasses", "wearing eyeglasses",
        "bespectacled", "sunglasses", "reading glasses", "shades",
    ),
    "Goatee": (
        "goatee", "goatee beard", "chin beard", "a small beard on the chin", "van dyke beard",
    ),
    "Gray_Hair": (
        "gray hair", "grey hair", "white hair", "silver hair", "grey-haired", "gray-haired",
        "salt-and-pepper hair", "graying hair", "silver-haired", "white-haired",
    ),
    "Heavy_Makeup": (
        "heavy makeup", "lots of makeup", "made-up face", "thick makeup", "heavily made up",
        "eyeshadow and foundation", "glamorous makeup", "eyeliner",
    ),
    "High_Cheekbones": (
        "high cheekbones", "prominent cheekbones", "sharp cheekbones", "defined cheekbones",
        "chiseled cheekbones",
    ),
    "Male": ("masculine", "masculine face", "manly", "male-looking face", "masculine features"),
    "Mouth_Slightly_Open": (
        "mouth slightly open", "open mouth", "parted lips", "lips apart", "mouth open",
        "mouth ajar", "open-mouthed",
    ),
    "Mustache": (
        "mustache", "moustache", "a mustache above the lip", "handlebar mustache", "mustached",
    ),
    "Narrow_Eyes": (
        "narrow eyes", "squinting", "squinting eyes", "slit eyes", "small narrow eyes", "squint",
    ),
    "No_Beard": (
        "no beard", "clean-shaven", "clean shaven", "beardless", "without a beard", "shaved face",
        "smooth-shaven", "no facial hair",
    ),
    "Oval_Face": ("oval face", "oval-shaped face", "egg-shaped face", "elongated oval face"),
    "Pale_Skin": (
        "pale skin", "pale", "fair skin", "pale complexion", "pasty skin", "light skin",
        "porcelain skin", "pale-skinned",
    ),
    "Pointy_Nose": (
        "pointy nose", "pointed nose", "sharp nose", "narrow pointed nose", "beak-like nose",
    ),
    "Receding_Hairline": (
        "receding hairline", "receding hair", "thinning hairline", "high forehead hairline",
        "widow's peak", "hair loss at the temples",
    ),
    "Rosy_Cheeks": (
        "rosy cheeks", "red cheeks", "flushed cheeks", "pink cheeks", "blushing", "rosy-cheeked",
    ),
    "Sideburns": ("sideburns", "long sideburns", "mutton chops", "side whiskers", "sideboards"),
    "Smiling": (
        "smiling", "smile", "a smile", "grinning", "grin", "smiling face", "happy face", "beaming",
        "laughing", "cheerful", "smiley", "smirk", "happy expression", "toothy grin", "happy",
        "smiles", "grins",
    ),
    "Straight_Hair": (
        "straight hair", "sleek straight hair", "straight-haired", "flat straight hair",
        "long straight hair",
    ),
    "Wavy_Hair": (
        "wavy hair", "curly hair", "curls", "wavy locks", "curly-haired", "frizzy hair", "ringlets",
    ),
    "Wearing_Earrings": (
        "earrings", "wearing earrings", "earring", "ear studs", "hoop earrings", "pierced ears",
        "hoops", "hoops in the ears",
    ),
    "Wearing_Hat": (
        "hat", "wearing a hat", "cap", "baseball cap", "beanie", "fedora", "cowboy hat", "headwear",
    ),
    "Wearing_Lipstick": (
        "lipstick", "wearing lipstick", "red lipstick", "painted lips", "lip gloss", "colored lips",
    ),
    "Wearing_Necklace": (
        "necklace", "wearing a necklace", "pendant necklace", "pearl necklace",
        "chain around the neck",
    ),
    "Wearing_Necktie": ("necktie", "tie", "wearing a tie", "bow tie", "a suit and tie", "neck tie"),
    "Young": ("young", "youthful", "young-looking", "young person", "youth"),
    "male": (
        "man", "male", "guy", "gentleman", "boy", "a man", "dude", "husband", "father", "he", "his",
        "him", "men", "guys",
    ),
    "female": (
        "woman", "female", "lady", "girl", "a woman", "wife", "mother", "she", "her", "gal", "women",
        "ladies",
    ),
    "age_0_2": ("baby", "infant", "newborn", "toddler", "a baby", "one-year-old"),
    "age_3_9": (
        "child", "kid", "little kid", "young child", "small child", "schoolchild", "schoolkid",
        "kindergartner",
    ),
    "age_10_19": (
        "teenager", "teen", "adolescent", "teenage", "high school student", "in their teens",
    ),
    "age_20_29": (
        "in their twenties", "twenties", "twenty-something", "young adult", "college student",
        "20s",
    ),
    "age_30_39": ("in their thirties", "thirties", "thirty-something", "30s", "early thirties"),
    "age_40_49": ("in their forties", "forties", "forty-something", "40s", "early forties"),
    "age_50_59": ("in their fifties", "fifties", "fifty-something", "middle-aged", "50s"),
    "age_60_69": ("in their sixties", "sixties", "sixty-something", "older", "retiree", "60s"),
    "age_70_plus": (
        "elderly", "old", "senior", "aged", "very old", "grandparent", "in their seventies",
        "octogenarian", "senior citizen",
    ),
    "white": (
        "white", "caucasian", "european", "white person", "white skin", "fair-skinned caucasian",
    ),
    "black": (
        "black", "african", "african american", "black person", "dark skin", "dark-skinned",
        "nigerian", "jamaican",
    ),
    "asian": (
        "asian", "east asian", "chinese", "japanese", "korean", "vietnamese", "asian person",
        "filipino",
    ),
    "indian": ("indian", "south asian", "pakistani", "bangladeshi", "sri lankan", "indian person"),
    "other": (
        "hispanic", "latino", "latina", "middle eastern", "arab", "mixed race", "native american",
        "mexican", "brazilian", "persian",
    ),
    # Read from the photo's pixels (pipeline/pixel_attributes.py), not by the network: they
    # have no class centre, so they rank by their stored probability alone.
    "hair_long": (
        "long hair", "long-haired", "shoulder-length hair", "long locks", "flowing hair",
        "hair down to the shoulders", "long flowing hair", "waist-length hair",
    ),
    "hair_short": (
        "short hair", "short-haired", "cropped hair", "close-cropped hair", "buzz cut",
        "crew cut", "pixie cut", "short haircut", "cropped haircut",
    ),
    "hair_red": (
        "red hair", "redhead", "red-haired", "ginger", "ginger hair", "auburn", "auburn hair",
        "copper hair", "red-headed", "fiery red hair",
    ),
    "eyes_blue": ("blue eyes", "blue-eyed", "light blue eyes", "pale blue eyes", "bright blue eyes"),
    "eyes_green": ("green eyes", "green-eyed", "emerald eyes", "bright green eyes"),
    "eyes_brown": ("brown eyes", "brown-eyed", "dark brown eyes", "chocolate brown eyes"),
    # The 7 expressions (spec.EMOTIONS; models/emotion.py, learnt from fer's labels). "happy",
    # "happy face", "cheerful" stay with Smiling (CelebA's labels; the happy emotion separates
    # Smiling at AUC 0.97): these are the other ways of saying it.
    "angry": (
        "angry", "angry face", "angry expression", "mad", "furious", "annoyed", "grumpy",
        "scowling", "enraged", "irritated", "an angry look", "fuming",
    ),
    "disgust": (
        "disgusted", "disgust", "disgusted face", "grossed out", "revolted", "repulsed",
        "a look of disgust",
    ),
    "fear": (
        "scared", "afraid", "frightened", "fearful", "terrified", "fear", "scared face",
        "a look of fear", "panicked",
    ),
    "happy": (
        "joyful", "joyous", "delighted", "overjoyed", "elated", "glad", "looks happy",
        "a happy mood", "gleeful",
    ),
    "sad": (
        "sad", "unhappy", "crying", "gloomy", "sorrowful", "sad face", "sad expression",
        "melancholy", "downcast", "tearful", "depressed", "miserable",
    ),
    "surprise": (
        "surprised", "shocked", "astonished", "amazed", "surprise", "startled",
        "surprised face", "a look of surprise", "stunned",
    ),
    "neutral": (
        "neutral expression", "neutral", "expressionless", "blank expression", "straight face",
        "poker face", "emotionless", "impassive", "neutral face",
    ),
}

#: Descriptions of a class being absent: a span matching one yields the class negated.
OPPOSITES: dict[str, tuple[str, ...]] = {
    "No_Beard": ("beard", "bearded", "full beard", "a thick beard", "facial hair", "with a beard"),
    "Smiling": (
        "frowning", "serious expression", "stern face", "unsmiling",
    ),
    "Mouth_Slightly_Open": ("closed mouth", "mouth closed", "lips pressed together"),
    "Narrow_Eyes": ("wide eyes", "wide-open eyes", "big round eyes"),
    "Attractive": ("unattractive", "ugly", "homely"),
    "Blurry": ("sharp photo", "in focus", "crisp clear image"),
    "Bald": ("full head of hair", "a head full of hair"),
    "Male": ("feminine", "feminine face", "womanly", "feminine features"),
}

#: Classes of which at most one is kept per clause (the best-scoring one).
EXCLUSIVE_GROUPS: tuple[frozenset[str], ...] = (
    frozenset(GENDERS),
    frozenset(name for name, _, _ in AGE_GROUPS),
    frozenset(ETHNICITIES),
    frozenset({"hair_long", "hair_short"}),
    frozenset({"eyes_blue", "eyes_green", "eyes_brown"}),
    frozenset(EMOTIONS),
)

#: Words people use for emotions -> the emotion class that answers them (DESIGN.md's second
#: round: angry, disgust, fear, happy, sad, surprise, neutral). A word whose class has no
#: DESCRIPTIONS is told to be unknown instead of being matched to something else.
EMOTION_WORDS: dict[str, str] = {
    "sad": "sad", "unhappy": "sad", "crying": "sad", "gloomy": "sad", "sorrowful": "sad",
    "angry": "angry", "mad": "angry", "furious": "angry", "annoyed": "angry", "grumpy": "angry",
    "surprised": "surprise", "shocked": "surprise", "astonished": "surprise", "amazed": "surprise",
    "scared": "fear", "afraid": "fear", "frightened": "fear", "fearful": "fear",
    "disgusted": "disgust", "neutral": "neutral", "expressionless": "neutral",
}

#: How ages are asked (search/text.py reads them with regular expressions, not the encoder).
AGE_PHRASES: tuple[str, ...] = (
    "under 20", "over 60", "between 25 and 35", "25-35 years old", "about 40", "40-ish", "60+",
    "50 or older", "at most 30", "a 45-year-old", "in her thirties", "in his 30s", "teenager",
    "elderly",
)


#: The colour words that may say the colour of hair or eyes, with the classes each may name there
#: (search/text.py `_colour_allows`): a span naming a colour of hair ("purple hair") or of eyes
#: ("grey eyes") becomes a class only when this table lets that colour name it; else the words are
#: not understood (the encoder's nearest description was Blond_Hair for "purple hair" and
#: "blue hair", Brown_Hair for "green hair" and "hazel eyes", Rosy_Cheeks for "pink hair").
HAIR_COLOURS: dict[str, tuple[str, ...]] = {
    "Black_Hair": ("black", "dark", "jet", "raven", "ebony"),
    "Blond_Hair": ("blond", "blonde", "fair", "golden", "platinum", "yellow", "light"),
    "Brown_Hair": ("brown", "brunette", "chestnut", "dark", "light"),
    "Gray_Hair": ("grey", "gray", "white", "silver", "silvery", "greying", "graying", "salt"),
    "hair_red": ("red", "auburn", "ginger", "copper", "strawberry", "fiery", "reddish"),
}
EYE_COLOURS: dict[str, tuple[str, ...]] = {
    "eyes_blue": ("blue", "light", "pale", "bright"),
    "eyes_green": ("green", "emerald", "bright"),
    "eyes_brown": ("brown", "dark", "chocolate"),
}
#: Colour words beyond those (which name no class of hair or eyes here).
OTHER_COLOURS: tuple[str, ...] = (
    "purple", "violet", "pink", "lilac", "lavender", "turquoise", "teal", "magenta", "cyan",
    "orange", "hazel", "amber", "grey", "gray", "green", "blue", "rainbow", "neon", "colored",
    "coloured", "dyed", "multicolored", "multicoloured",
)

