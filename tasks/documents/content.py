"""The Swedish content of the document set: fill-in headings, dialogue questions, controls,
criteria. Data, not code, kept in one place so that wording is reviewed in one file."""

from __future__ import annotations

MEETING_KIND_SV = {"information": "Information", "influence": "Påverkan", "decision": "Beslut"}
YES_NO = ("Ja", "Nej")
TRAFFIC_LIGHTS = ("Grön", "Gul", "Röd")
FREQUENCIES = ("Löpande", "Månadsvis", "Kvartalsvis", "Per tertial", "Halvårsvis", "Årligen")

# The committee feedback template of seed 001 (six headings), plus the risk and sensitivity
# analysis the auditors asked for.
FEEDBACK_FIELDS: tuple[tuple[str, str, str], ...] = (
    (
        "bidrag_mal",
        "Nämndens bidrag till fullmäktiges mål och uppdrag",
        "Beskriv hur nämnden bidrar till varje mål och uppdrag som riktas till nämnden. "
        "Ange vilka mål nämnden vill avstå från, där det är tillåtet, och varför.",
    ),
    (
        "utvecklingsinsatser",
        "Utvecklingsinsatser och planerade förändringar i verksamheten",
        "Vilka större förändringar planerar nämnden under planperioden? Vad krävs för att de ska lyckas?",
    ),
    (
        "kompetensforsorjning",
        "Inriktning för kompetensförsörjning",
        "Beskriv behov av rekrytering, kompetensutveckling och omställning under planperioden.",
    ),
    (
        "hallbar_ekonomi",
        "Plan för en hållbar ekonomi och prioritering av resurser",
        "Hur når nämnden en ekonomi i balans inom ramen? Vilka prioriteringar och "
        "effektiviseringar föreslås, och vad blir konsekvenserna?",
    ),
    (
        "investeringar",
        "Investeringsplanering",
        "Kommentera investeringsplanen för nämndens del. Nya behov anges i Excelbilagan med belopp per år.",
    ),
    ("ovriga_synpunkter", "Övriga synpunkter", "Övriga synpunkter på planeringsförutsättningarna."),
    (
        "risk_kanslighet",
        "Risk- och känslighetsanalys",
        "Vilka antaganden är planen känsligast för (volymer, löner, priser, statsbidrag, "
        "kompetens)? Vad händer om de slår fel, och hur hanterar nämnden det?",
    ),
)

# Follow-up dialogue of seed 003 (Forshaga).
DIALOGUE_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("stolta", "Vilka tre saker är vi mest stolta över?", "Ange tre saker med en kort motivering."),
    ("utmaningar", "Vilka tre saker ser vi som våra största utmaningar?", "Ange tre utmaningar."),
    ("lardomar", "Vilka tre lärdomar har vi gjort?", "Ange tre lärdomar och vad de betyder framåt."),
    ("gor_sjalva", "Vad gör vi själva?", "Vad kommer vi själva att göra som följd av analysen?"),
    (
        "lyfter_vidare",
        "Vad lyfter vi till nästa nivå?",
        "Vad behöver lyftas till nästa nivå för stöd eller beslut?",
    ),
    (
        "dela_med_oss",
        "Vad vill vi dela med oss av?",
        "Vad i vår analys är viktigt att dela med andra? (Kommunikation och transparens.)",
    ),
)
COMMITTEE_DIALOGUE_FIELDS: tuple[tuple[str, str, str], ...] = (
    (
        "mot_malen",
        "Är verksamheten där den borde vara i arbetet mot de övergripande målen?",
        "Bedöm läget mot fullmäktiges mål och målområden.",
    ),
    (
        "paverkan_invanare",
        "Hur påverkas de vi är till för på kort och lång sikt?",
        "Hur är det troligt att de vi är till för påverkas av sättet verksamheten har arbetat "
        "med de övergripande målen?",
    ),
)

# Organisation-wide internal control areas (seeds 002, 003), shown in the PF appendix and
# offered as starting rows in each committee's internal control plan.
COMMON_CONTROLS: tuple[tuple[str, str, str, str], ...] = (
    ("Attest och utbetalningar", "Felaktiga eller obehöriga utbetalningar", "Stickprov på attester", "Kvartalsvis"),
    ("Inköp och avtal", "Inköp utanför avtal", "Avtalstrohetsuppföljning", "Per tertial"),
    ("Informationssäkerhet", "Obehörig åtkomst till personuppgifter", "Behörighetsgenomgång", "Halvårsvis"),
    ("Bisysslor", "Otillåtna bisysslor", "Årlig inventering av bisysslor", "Årligen"),
    ("Kompetensförsörjning", "Svårt att rekrytera nyckelkompetenser", "Uppföljning av vakanser", "Per tertial"),
)

# One risk scale (probability × consequence, 1–4 each) for the matrix and every text about it.
RISK_SCALE = "1–2 låg, 3–4 måttlig, 6–8 hög och 9–16 mycket hög risk"

# The finance department's assessment (probability, consequence) of the common areas.
COMMON_CONTROL_SCORES: tuple[tuple[int, int], ...] = ((2, 3), (3, 2), (2, 4), (2, 2), (3, 3))

# Criteria for the investment prioritisation (seed 001: "fastställda kriterier") and weights.
INVESTMENT_CRITERIA: tuple[tuple[str, str, float], ...] = (
    ("Lagkrav och säkerhet", "Krävs investeringen av lag, myndighetskrav eller säkerhet?", 0.30),
    ("Verksamhetsnytta", "Hur mycket förbättras kvalitet och tillgänglighet för invånarna?", 0.25),
    ("Ekonomisk nytta", "Ger investeringen lägre driftkostnader eller undvikna kostnader?", 0.20),
    ("Hållbarhet", "Bidrar investeringen till miljö- och klimatmål?", 0.15),
    ("Risk vid utebliven investering", "Vad händer om investeringen inte görs?", 0.10),
)

# The planning material's sections the planning prerequisites carry (field name, heading there).
BASIS_SECTIONS: tuple[tuple[str, str], ...] = (
    ("omvarldsanalys", "Omvärld"),
    ("makroekonomi", "Makroekonomi och skatteunderlag"),
    ("statlig_styrning", "Statlig styrning"),
    ("utveckling", "Verksamhetsutveckling och forskning"),
)

FOLLOW_UP_ROWS = ("Intäkter", "Personalkostnader", "Lokalkostnader", "Köpt verksamhet", "Övriga kostnader")


ACTIVITY_ROWS_PER_UNIT = 3
