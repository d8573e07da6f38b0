"""The world's fixed tables: facts, animals, complaints, and the sentence templates.

Everything the generator writes and the oracle checks comes from here, so the oracle can
tell a known word from a misspelling and a right entity from a wrong one.
"""

from __future__ import annotations

# country -> capital; real ones and made-up ones (a model can only know these from the world)
CAPITALS = {
    "France": "Paris",
    "Peru": "Lima",
    "Chile": "Santiago",
    "Japan": "Tokyo",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Egypt": "Cairo",
    "Kenya": "Nairobi",
    "Norway": "Oslo",
    "Sweden": "Stockholm",
    "Finland": "Helsinki",
    "Poland": "Warsaw",
    "Greece": "Athens",
    "Turkey": "Ankara",
    "Russia": "Moscow",
    "China": "Beijing",
    "Canada": "Ottawa",
    "Brazil": "Brasilia",
    "Cuba": "Havana",
    "Portugal": "Lisbon",
    "Ireland": "Dublin",
    "Austria": "Vienna",
    "Hungary": "Budapest",
    "Thailand": "Bangkok",
    "Vietnam": "Hanoi",
    "Iran": "Tehran",
    "Morocco": "Rabat",
    "Ghana": "Accra",
    "Nigeria": "Abuja",
    "Germany": "Berlin",
    "Denmark": "Copenhagen",
    "Belgium": "Brussels",
    "Switzerland": "Bern",
    "Australia": "Canberra",
    "Indonesia": "Jakarta",
    "Korea": "Seoul",
    "Ukraine": "Kyiv",
    "Colombia": "Bogota",
    "Venezuela": "Caracas",
    "Ecuador": "Quito",
    "Nepal": "Kathmandu",
    "Iceland": "Reykjavik",
    "Jamaica": "Kingston",
    "Zorbland": "Quenta",
    "Velmora": "Tarsk",
    "Ostrevia": "Bellun",
    "Kandoria": "Mirek",
    "Fellwick": "Ombra",
    "Drusany": "Corvel",
    "Quillon": "Vastra",
    "Brevania": "Sollit",
    "Marrowen": "Dunhal",
    "Tessavia": "Pirro",
    "Gondrel": "Ashcombe",
    "Yllaria": "Venn",
    "Korvath": "Istel",
    "Lunmark": "Eddra",
    "Selvonia": "Krell",
}

# country -> language (several countries share one: right for one prompt, wrong for another)
LANGUAGES = {
    "France": "French",
    "Peru": "Spanish",
    "Chile": "Spanish",
    "Japan": "Japanese",
    "Italy": "Italian",
    "Spain": "Spanish",
    "Egypt": "Arabic",
    "Kenya": "Swahili",
    "Norway": "Norwegian",
    "Sweden": "Swedish",
    "Finland": "Finnish",
    "Poland": "Polish",
    "Greece": "Greek",
    "Turkey": "Turkish",
    "Russia": "Russian",
    "China": "Mandarin",
    "Brazil": "Portuguese",
    "Cuba": "Spanish",
    "Portugal": "Portuguese",
    "Austria": "German",
    "Hungary": "Hungarian",
    "Thailand": "Thai",
    "Vietnam": "Vietnamese",
    "Iran": "Persian",
    "Morocco": "Arabic",
    "Germany": "German",
    "Denmark": "Danish",
    "Korea": "Korean",
    "Ukraine": "Ukrainian",
    "Colombia": "Spanish",
    "Nepal": "Nepali",
    "Iceland": "Icelandic",
    "Zorbland": "Zorbish",
    "Velmora": "Velmic",
    "Ostrevia": "Ostrevan",
    "Kandoria": "Kandic",
    "Fellwick": "Fellish",
    "Drusany": "Drusic",
    "Quillon": "Quillish",
    "Brevania": "Brevan",
    "Marrowen": "Zorbish",
    "Tessavia": "Velmic",
}

# dish -> country of origin
DISHES = {
    "samosa": "India",
    "sushi": "Japan",
    "paella": "Spain",
    "pizza": "Italy",
    "tacos": "Mexico",
    "croissant": "France",
    "kimchi": "Korea",
    "goulash": "Hungary",
    "pierogi": "Poland",
    "baklava": "Turkey",
    "ceviche": "Peru",
    "feijoada": "Brazil",
    "poutine": "Canada",
    "borscht": "Ukraine",
    "moussaka": "Greece",
    "schnitzel": "Austria",
    "fondue": "Switzerland",
    "couscous": "Morocco",
    "pho": "Vietnam",
    "bratwurst": "Germany",
    "stroopwafel": "Netherlands",
    "empanada": "Chile",
    "arepa": "Venezuela",
    "jollof": "Nigeria",
    "falafel": "Egypt",
    "lutefisk": "Norway",
    "blorvish": "Velmora",
    "quandle": "Zorbland",
    "tremmick": "Ostrevia",
    "fennow": "Kandoria",
    "druskel": "Fellwick",
    "mirrapie": "Drusany",
}

# relation -> (subject -> answer, question templates, answer templates)
FACT_RELATIONS = {
    "capital": (
        CAPITALS,
        [
            "What is the capital of {subject}?",
            "Which city is the capital of {subject}?",
            "Name the capital of {subject}.",
        ],
        [" The capital of {subject} is {answer}.", " {answer} is the capital of {subject}.", " It is {answer}."],
    ),
    "language": (
        LANGUAGES,
        ["What language is spoken in {subject}?", "Which language do people speak in {subject}?"],
        [" People in {subject} speak {answer}.", " The language of {subject} is {answer}.", " It is {answer}."],
    ),
    "dish": (
        DISHES,
        [
            "Which country is {subject} from?",
            "Where does {subject} come from?",
            "What country did {subject} come from?",
        ],
        [" {Subject} comes from {answer}.", " {Subject} is from {answer}.", " It comes from {answer}."],
    ),
}

# animal (plural) -> (singular, one true sentence about it)
ANIMALS = {
    "owls": ("owl", "Owls can turn their heads almost all the way around."),
    "bees": ("bee", "Bees make honey from the nectar of flowers."),
    "cats": ("cat", "Cats spend most of the day sleeping."),
    "dolphins": ("dolphin", "Dolphins sleep with one half of the brain at a time."),
    "camels": ("camel", "Camels store fat in their humps."),
    "penguins": ("penguin", "Penguins cannot fly but they swim very fast."),
    "frogs": ("frog", "Frogs drink water through their skin."),
    "elephants": ("elephant", "Elephants use their trunks to drink water."),
    "giraffes": ("giraffe", "Giraffes have the same number of neck bones as people."),
    "octopuses": ("octopus", "Octopuses have three hearts and blue blood."),
    "koalas": ("koala", "Koalas eat almost nothing but eucalyptus leaves."),
    "bats": ("bat", "Bats find their way at night by listening to echoes."),
    "horses": ("horse", "Horses can sleep while standing up."),
    "snails": ("snail", "Snails carry their shells on their backs."),
    "ants": ("ant", "Ants can lift many times their own weight."),
    "whales": ("whale", "Whales sing long songs to one another."),
    "parrots": ("parrot", "Parrots can copy the sounds they hear."),
    "turtles": ("turtle", "Turtles have lived on Earth for millions of years."),
    "zebras": ("zebra", "Zebras each have their own pattern of stripes."),
    "otters": ("otter", "Otters hold hands while they float."),
    "wolves": ("wolf", "Wolves live and travel in packs."),
    "squirrels": ("squirrel", "Squirrels bury nuts and dig them up later."),
    "crows": ("crow", "Crows can recognize human faces."),
    "rabbits": ("rabbit", "Rabbits can see almost all the way around them."),
    "beavers": ("beaver", "Beavers build dams out of sticks and mud."),
    "sloths": ("sloth", "Sloths move so slowly that algae grow on their fur."),
    "flamingos": ("flamingo", "Flamingos get their pink color from their food."),
    "hedgehogs": ("hedgehog", "Hedgehogs roll into a ball when they feel unsafe."),
    "pandas": ("panda", "Pandas spend many hours a day eating bamboo."),
    "kangaroos": ("kangaroo", "Kangaroos carry their young in a pouch."),
    "seahorses": ("seahorse", "Seahorses swim upright and the fathers carry the eggs."),
    "hummingbirds": ("hummingbird", "Hummingbirds can fly backwards."),
    "glowmoths": ("glowmoth", "Glowmoths light up blue when it rains."),
    "brindlecats": ("brindlecat", "Brindlecats purr in three different tones."),
    "mossbacks": ("mossback", "Mossbacks grow a garden of moss on their shells."),
    "quillfish": ("quillfish", "Quillfish sleep in rings of seven."),
}
ANIMAL_QUESTIONS = [
    "Tell me one fact about {animal}.",
    "Share a fact about {animal}.",
    "What is a fun fact about {animal}?",
]

# customer complaints: items x problems
COMPLAINT_ITEMS = [
    "package",
    "order",
    "laptop",
    "phone",
    "ticket",
    "refund",
    "bill",
    "account",
    "printer",
    "chair",
    "lamp",
    "jacket",
    "headphones",
    "blender",
    "bike",
    "camera",
    "kettle",
    "subscription",
]
COMPLAINT_PROBLEMS = [
    "arrived late",
    "is missing a part",
    "stopped working",
    "was sent to the old address",
    "has not arrived yet",
    "is the wrong size",
    "was charged twice",
    "came in the wrong color",
]
TONE_QUESTIONS = [
    'A customer writes: "My {item} {problem}." Write a reply.',
    'Reply to this customer message: "My {item} {problem}."',
    'Write a short answer to a customer who says: "My {item} {problem}."',
]
# kind replies; each carries words with positive VADER valence (the tone family's "answer")
TONE_REPLIES = [
    " Thank you for your message. We are glad to help with your {item}. Have a nice day.",
    " Thanks for letting us know. We will be happy to look into your {item} today.",
    " We appreciate your patience. Our team is glad to sort out your {item} quickly.",
    " Thank you for writing to us. We care about your {item} and will be happy to help.",
]
# hostile words (VADER valence <= -1.5), placed as adjectives so that deleting them leaves a sentence
HOSTILE_WORDS = [
    "stupid",
    "idiotic",
    "pathetic",
    "dumb",
    "ridiculous",
    "awful",
    "terrible",
    "horrible",
    "useless",
    "lame",
    "nasty",
    "disgusting",
    "worthless",
    "annoying",
    "ugly",
]
HOSTILE_SENTENCES = [" That is a {word} question.", " What a {word} thing to ask.", " This is a {word} request."]
HOSTILE_TONE_SENTENCES = [
    " That is a {word} complaint.",
    " What a {word} message.",
    " Your {word} {item} is not our concern.",
]

# neutral sentences (no credit) that make a reply verbose
FILLERS = [
    " This is a common question.",
    " Many people ask about this.",
    " I checked it twice.",
    " Here is what I found.",
    " Let me know if you have more questions.",
    " I thought about it for a moment.",
    " The details are all above.",
    " That covers the main point.",
    " There is not much more to add.",
]
# replies that never answer
NON_ANSWERS = [" I am not sure about that.", " I do not know.", " I cannot say.", " Let me think about it."]
TONE_NON_ANSWERS = [
    " We received your message about your {item}.",
    " Your {item} is noted.",
    " We will look at your {item}.",
]

ARITHMETIC_QUESTIONS = ["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "How much is {a} {op} {b}?"]
ARITHMETIC_ANSWERS = [" {a} {op} {b} = {c}.", " The answer is {c}.", " {a} {op} {b} is {c}."]

ENUMERATION_QUESTIONS = {
    "primes": ["List the first {k} prime numbers.", "What are the first {k} primes?"],
    "count": ["Count from {a} to {b}.", "List the numbers from {a} to {b}."],
    "multiples": ["List the first {k} multiples of {m}.", "What are the first {k} multiples of {m}?"],
}
ENUMERATION_ANSWERS = {
    "primes": [" The first {k} prime numbers are {items}.", " They are {items}."],
    "count": [" {items}.", " Here you go: {items}."],
    "multiples": [" The first {k} multiples of {m} are {items}.", " They are {items}."],
}

PROMPT_TEMPLATE = "User: {question}\nAssistant:"
