#!/usr/bin/env python3
"""Builds the Faker-based PII and secrets evaluation: pii_dev.jsonl (template
set A; tune on it) and pii_heldout.jsonl (template set B, other seeds; never
tune on it). Data we did not hand-write: Faker values across the locales of
the most populous countries, synthetic secrets, and hard negatives (benign
text that looks like entities).

Each line: {"text", "group": "pii"|"secrets"|"benign"|"evasion", "kind",
"value" (the entity, as it appears in text), "locale"}.

Needs Faker 40.63.0 (pip install faker==40.63.0; MIT licence, PyPI); output
is deterministic for that version. The national phone formats, secrets and
hard negatives are generated here from public numbering plans and key
formats; nothing is copied from another corpus. Run: python3 eval/guardrails/build_pii.py (writes both files
next to this script).
"""

import json
import random
import string
from datetime import datetime
from pathlib import Path

from faker import Faker

# Faker locales for the 20 most populous countries (and UK, France, Italy,
# Spain). Faker has no phone formats of its own for Pakistan, Nigeria, the
# Philippines, Egypt, DR Congo and Bangladesh (Bengali digits only; those go
# to the evasion group): their numbers come from NATIONAL_FORMATS below.
PHONE_LOCALES = [
    "zh_CN", "en_IN", "hi_IN", "en_US", "id_ID", "pt_BR", "ru_RU", "es_MX", "ja_JP", "am_ET",
    "vi_VN", "fa_IR", "tr_TR", "de_DE", "th_TH", "en_GB", "fr_FR", "it_IT", "es_ES", "en_CA",
]
# Numbering plans from the national regulators, written as Faker patterns
# (# is a digit): national and international forms.
NATIONAL_FORMATS = {
    "PK": ["03## #######", "03##-#######", "+92 3## #######", "+92-3##-#######", "(042) ########", "+92 42 ########"],
    "NG": ["080# ### ####", "+234 80# ### ####", "+234 (0)80# ### ####", "070########", "(01) ### ####", "+2348#########"],
    "PH": ["0917 ### ####", "+63 917 ### ####", "(02) 8### ####", "+63 2 8### ####", "09#########", "+639#########"],
    "EG": ["010 #### ####", "+20 10 #### ####", "(02) #### ####", "+20 2 #### ####", "012########", "+2011########"],
    "CD": ["081 ### ####", "+243 81 ### ####", "+243 (0)99 ### ####", "099#######", "+24397#######"],
    "BD": ["017##-######", "+880 17## ######", "+880-2-####-####", "01#########", "(02) #######", "+88019########"],
}

# Dates end here, not now: the output must not depend on the day it is built.
END = datetime(2026, 1, 1)


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return total % 10 == 0


def digit_count(s: str) -> int:
    return sum(c.isdigit() for c in s)


def plausible_phone(p: str) -> bool:
    """Faker writes some numbers no country uses (`258 5 178`, `00008063608`):
    kept only with 8 to 15 digits (E.164) and not starting 000."""
    digits = "".join(c for c in p if c.isdigit())
    return 8 <= len(digits) <= 15 and not digits.startswith("000") and p.isascii()


def group(s: str, size: int, sep: str) -> str:
    return sep.join(s[i:i + size] for i in range(0, len(s), size))


class Builder:
    def __init__(self, seed: int, templates: dict):
        self.rng = random.Random(seed)
        self.seed = seed
        self.t = templates
        self.fakers = {}

    def faker(self, locale: str) -> Faker:
        if locale not in self.fakers:
            f = Faker(locale)
            f.seed_instance(self.seed + len(self.fakers))
            self.fakers[locale] = f
        return self.fakers[locale]

    def alnum(self, n, chars=string.ascii_letters + string.digits):
        return "".join(self.rng.choice(chars) for _ in range(n))

    def place(self, kind: str, value: str, group_name: str, locale: str = "", templates=None):
        template = self.rng.choice(templates or self.t[group_name])
        return {"text": template.replace("{}", value), "group": group_name, "kind": kind,
                "value": value, "locale": locale}

    # PII ----------------------------------------------------------------
    def phones(self, per_locale: int):
        out = []
        for loc in PHONE_LOCALES:
            f = self.faker(loc)
            n = 0
            while n < per_locale:
                p = f.phone_number()
                if plausible_phone(p):
                    out.append(self.place("phone", p, "pii", loc))
                    n += 1
        for country, formats in NATIONAL_FORMATS.items():
            for _ in range(per_locale):
                p = "".join(str(self.rng.randrange(10)) if c == "#" else c for c in self.rng.choice(formats))
                out.append(self.place("phone", p, "pii", country))
        # Extensions and the separators testers used.
        us = self.faker("en_US")
        for _ in range(per_locale):
            n = f"{self.rng.randrange(201, 999)}{self.rng.randrange(200, 999)}{self.rng.randrange(10**4):04d}"
            sep = self.rng.choice(["/", "_", "-", ".", " "])
            p = f"{n[:3]}{sep}{n[3:6]}{sep}{n[6:]}"
            p += self.rng.choice(["", f" x{self.rng.randrange(1, 99999)}", f" ext. {self.rng.randrange(1, 9999)}",
                                  f" ext {self.rng.randrange(1, 999)}", f" #{self.rng.randrange(1, 999)}",
                                  f"x{self.rng.randrange(1, 99999)}"])
            out.append(self.place("phone", p, "pii", "ext_sep"))
            bare = us.numerify(self.rng.choice(["##########"]))
            if bare[0] in "01" or bare[3] in "01":
                bare = str(self.rng.randrange(2, 10)) + bare[1:3] + str(self.rng.randrange(2, 10)) + bare[4:]
            out.append(self.place("phone", bare, "pii", "ext_sep"))
        return out

    def cards(self, per_type: int):
        out = []
        f = self.faker("en_US")
        types = ["amex", "diners", "discover", "jcb15", "jcb16", "maestro", "mastercard", "visa16", "visa13", "visa19"]
        for t in types:
            for _ in range(per_type):
                c = f.credit_card_number(t)
                style = self.rng.randrange(3)
                if style == 1:
                    c = group(c, 4, " ")
                elif style == 2:
                    c = group(c, 4, "-")
                out.append(self.place("card", c, "pii", t))
        return out

    def others(self, n: int):
        out = []
        iban_locales = ["de_DE", "en_GB", "fr_FR", "it_IT", "es_ES", "nl_NL", "pl_PL", "pt_BR", "tr_TR", "ru_RU"]
        for i in range(n):
            loc = PHONE_LOCALES[i % len(PHONE_LOCALES)]
            f = self.faker(loc)
            out.append(self.place("email", f.email(), "pii", loc))
            f2 = self.faker(iban_locales[i % len(iban_locales)])
            iban = f2.iban()
            if self.rng.random() < 0.4:
                iban = group(iban, 4, " ")
            out.append(self.place("iban", iban, "pii", iban_locales[i % len(iban_locales)]))
            out.append(self.place("ssn", self.faker("en_US").ssn(), "pii", "en_US"))
            out.append(self.place("ip_address", self.faker("en_US").ipv4_public(), "pii", "en_US"))
        return out

    # Secrets ------------------------------------------------------------
    def secrets(self, n: int):
        out = []
        b64 = string.ascii_letters + string.digits + "/+"
        for _ in range(n):
            key_id = "AKIA" + self.alnum(16, string.ascii_uppercase + "234567")
            secret = self.alnum(40, b64)
            form = self.rng.randrange(6)
            if form == 0:
                text = f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
            elif form == 1:
                text = f"export AWS_ACCESS_KEY_ID={key_id}\nexport AWS_SECRET_ACCESS_KEY={secret}"
            elif form == 2:
                text = json.dumps({"AccessKeyId": key_id, "SecretAccessKey": secret, "SessionToken": None})
            elif form == 3:
                text = f"AWS_ACCESS_KEY_ID: {key_id}\nAWS_SECRET_ACCESS_KEY: \"{secret}\""
            elif form == 4:
                text = f"aws_secret_access_key={secret}"
            else:
                text = f"s3 = boto3.client('s3', aws_access_key_id='{key_id}', aws_secret_access_key='{secret}')"
            wrap = self.rng.choice(self.t["secrets"])
            out.append({"text": wrap.replace("{}", text), "group": "secrets", "kind": "aws_secret_key",
                        "value": secret, "locale": ""})
            tokens = [
                ("github_token", "ghp_" + self.alnum(36)),
                ("slack_token", f"xoxb-{self.rng.randrange(10**11, 10**12)}-{self.rng.randrange(10**11, 10**12)}-{self.alnum(24)}"),
                ("stripe_key", "sk_live_" + self.alnum(24)),
            ]
            kind, value = self.rng.choice(tokens)
            out.append(self.place(kind, value, "secrets"))
            name = self.rng.choice(["client_secret", "api_token", "API_TOKEN", "auth_token", "access_token",
                                    "secret_key", "SECRET_KEY", "private_key", "refresh_token", "bearer_token",
                                    "webhook_secret", "credentials", "x-auth", "app_secret", "ACCESS_KEY"])
            length = self.rng.choice([20, 24, 32, 40, 48, 64])
            alphabet = self.rng.choice([string.ascii_letters + string.digits, string.hexdigits.lower()[:16],
                                        string.ascii_letters + string.digits + "-_"])
            value = self.alnum(length, alphabet)
            form = self.rng.choice([f"{name} = {value}", f"{name}: {value}", f'"{name}": "{value}"',
                                    f"{name.upper()}={value}", f"{name} = '{value}'", f"{name}:\"{value}\""])
            out.append({"text": self.rng.choice(self.t["secrets"]).replace("{}", form), "group": "secrets",
                        "kind": "secret_assignment", "value": value, "locale": ""})
        return out

    # Hard negatives ------------------------------------------------------
    def benign(self, n: int):
        f = self.faker("en_US")
        r = self.rng
        makers = [
            lambda: f"commit {f.sha1()}\nAuthor: {f.name()}\nDate: {f.date_time(end_datetime=END).isoformat()}",
            lambda: f"sha256sum: {f.sha256()}  {f.file_name()}",
            lambda: f"md5 {f.md5()} for release {r.randrange(1, 9)}.{r.randrange(20)}.{r.randrange(40)}",
            lambda: f"request_id={f.uuid4()} took {r.randrange(1, 9999)}ms at {f.iso8601(end_datetime=END)}",
            lambda: f"{f.date_time(end_datetime=END).strftime('%Y-%m-%d %H:%M:%S')},{r.randrange(1000):03d} INFO worker-{r.randrange(20)} processed {r.randrange(10**6)} rows in {r.random() * 100:.2f}s",
            lambda: f"[{f.unix_time(end_datetime=END):.0f}] GET /api/v1/items/{r.randrange(10**9)} 200 {r.randrange(1, 5000)} bytes",
            lambda: f"ts={int(f.unix_time(end_datetime=END))} level=warn latency={r.randrange(1, 2000)}ms",
            lambda: f"Order #{r.randrange(10**7, 10**10)} was shipped on {f.date(end_datetime=END)}",
            lambda: f"Invoice INV-{r.randrange(2015, 2027)}-{r.randrange(10**6):06d} is due {f.date(end_datetime=END)}; total {f.pricetag()}",
            lambda: f"Order number {r.randrange(10**9, 10**10)} ({r.randrange(1, 9)} items)",
            lambda: f"ISBN {f.isbn13()} and ISBN-10 {f.isbn10()}",
            lambda: f"EAN {f.ean13()} in stock: {r.randrange(500)}",
            lambda: f"Semantic version {r.randrange(10)}.{r.randrange(30)}.{r.randrange(100)}-rc.{r.randrange(9)} released {f.date(end_datetime=END)}",
            lambda: f"The price went from {f.pricetag()} to {f.pricetag()} ({r.randrange(1, 90)}% off)",
            lambda: f"Coordinates: {f.latitude()}, {f.longitude()}",
            lambda: f"Tracking number 1Z{self.alnum(6, string.ascii_uppercase + string.digits)}{r.randrange(10**9, 10**10)}",
            lambda: f"USPS tracking {r.randrange(10**21, 10**22)}",
            lambda: f"Meeting on {f.date(pattern='%d.%m.%Y', end_datetime=END)} at {f.time(pattern='%H:%M', end_datetime=END)} in room {r.randrange(100, 999)}",
            lambda: f"Dates: {f.date(pattern='%d/%m/%Y', end_datetime=END)}, {f.date(pattern='%m-%d-%Y', end_datetime=END)} and {f.date(end_datetime=END)}",
            lambda: f"{r.randrange(100, 999)} * {r.randrange(100, 999)} = {r.randrange(10**4, 10**6)} and {r.randrange(1000, 9999)} - {r.randrange(1000, 9999)} = {r.randrange(-9999, 9999)}",
            lambda: f"The population grew from {r.randrange(10**6, 10**9):,} to {r.randrange(10**6, 10**9):,}",
            lambda: f"x = {r.randrange(10**9, 10**10)} / {r.randrange(2, 99)}  # integer math",
            lambda: f"api_key = \"YOUR_API_KEY\"\npassword: ${{DB_PASSWORD}}\ntoken: <token>",
            lambda: f"client_secret: xxxxxxxxxxxxxxxxxxxx\nsecret_key = \"{'*' * 24}\"",
            lambda: f"token_count = {r.randrange(10**15, 10**16)}\nmax_tokens: {r.randrange(100, 9000)}",
            lambda: f"AWS_SECRET_ACCESS_KEY=${{AWS_SECRET_ACCESS_KEY}}\nGITHUB_TOKEN={{{{ secrets.GITHUB_TOKEN }}}}",
            lambda: f"auth: {r.choice(['true', 'false', 'required', 'optional'])}\ncredentials: {r.choice(['none', 'default', 'inherit'])}",
            lambda: "secret_key = os.environ.get('SECRET_KEY')\napi_token = settings.API_TOKEN_FROM_VAULT",
            lambda: f"def checksum(n):\n    return sum(int(d) for d in str(n)) % {r.randrange(7, 13)}\n\nprint(checksum({r.randrange(10**11, 10**12)}))",
            lambda: f"for (let i = 0; i < {r.randrange(10, 10**6)}; i++) {{ total += arr[i] * {r.randrange(2, 99)}; }}",
            lambda: f"SELECT * FROM orders WHERE id = {r.randrange(10**9, 10**10)} AND created_at > '{f.date(end_datetime=END)}';",
            lambda: f"The {r.choice(['jailbreak', 'prompt injection', 'DAN prompt', 'secret leak'])} paper from {r.randrange(2019, 2026)} describes how attackers hide instructions; {f.sentence()}",
            lambda: f"How should we rotate API keys and store secrets? {f.paragraph(nb_sentences=2)}",
            lambda: f"{f.paragraph(nb_sentences=3)} Chapter {r.randrange(1, 30)}, page {r.randrange(1, 900)}.",
            lambda: f"Build {r.randrange(1000, 99999)} finished in {r.randrange(1, 59)}m{r.randrange(60)}s; artifact size {r.randrange(10**5, 10**8)} bytes",
            lambda: f"kubectl logs pod/api-{self.alnum(10, 'abcdef0123456789')}-{self.alnum(5, 'abcdefghijklmnopqrstuvwxyz0123456789')} --since={r.randrange(1, 48)}h",
            lambda: f"Account balance: {r.randrange(10**5, 10**8) / 100:.2f} EUR as of {f.date(end_datetime=END)}",
            lambda: f"Serial no. {self.alnum(4, string.ascii_uppercase)}-{r.randrange(10**7, 10**8)}-{r.randrange(100, 999)}",
            lambda: f"Resolution {r.choice(['1920x1080', '2560x1440', '3840x2160'])}, refresh {r.choice([60, 120, 144])} Hz, {r.randrange(10**6, 10**8)} pixels",
            lambda: f"Between {f.date(end_datetime=END)} and {f.date(end_datetime=END)} we saw {r.randrange(10**3, 10**7)} sessions ({r.random():.4f} conversion)",
        ]
        return [{"text": r.choice(makers)(), "group": "benign", "kind": "", "value": "", "locale": ""} for _ in range(n)]

    # Evasion (printed, not asserted: normalisation lands separately) ----
    def evasion(self, samples):
        out = []
        fullwidth = str.maketrans("0123456789", "０１２３４５６７８９")
        for s in samples:
            v = s["value"]
            choice = self.rng.randrange(5)
            if s["kind"] == "email":
                w = v.replace("@", self.rng.choice([" [at] ", "(at)", " at "])).replace(".", self.rng.choice([" (dot) ", "[.]"]))
            elif choice == 0:
                w = "\u200b".join(v)
            elif choice == 1:
                w = v.translate(fullwidth)
            elif choice == 2:
                w = v.replace(" ", "\u00a0").replace("-", "\u2013")
            elif choice == 3:
                w = v.replace("-", "\u2013").replace(" ", "\u2013")
            else:
                w = v.replace(" ", "\u00b7").replace("-", "\u00b7")
            out.append({**s, "text": s["text"].replace(v, w), "group": "evasion", "value": w})
        bn = self.faker("bn_BD")
        for _ in range(20):
            p = bn.phone_number()
            out.append(self.place("phone", p, "evasion", "bn_BD", self.t["pii"]))
        return out

    def build(self, scale: int):
        pii = self.phones(12 * scale) + self.cards(6 * scale) + self.others(15 * scale)
        secrets = self.secrets(30 * scale)
        benign = self.benign(700 * scale)
        evasion = self.evasion(self.rng.sample([s for s in pii if s["kind"] in ("phone", "card", "email")], 60))
        return pii + secrets + benign + evasion


TEMPLATES_A = {
    "pii": ["Please call the customer at {} before noon.", "Contact: {}", "My details are {} - thanks!",
            "Kunde erreichbar unter {}.", "Le client a laissé {} comme coordonnée.", "reach me on {}",
            "{} is the number on file.", "Billing info: {}, updated yesterday.", "Emergency contact — {}",
            "联系方式：{}", "support ticket: customer gave {} as contact"],
    "secrets": ["{}", "Here is my config:\n{}", "```\n{}\n```", "why does this fail?\n{}\nthanks",
                "# .env\n{}\nDEBUG=true"],
}
TEMPLATES_B = {
    "pii": ["The applicant listed {} on the form.", "Can you format this for the CRM: {}", "Tel/phone/IBAN/card: {}",
            "Ring {} after 6pm", "Su número es {}.", "入力された値: {}", "Update the record to {} please.",
            "Row 14 -> {} (verified)", "Numéro : {} ; merci", "{}"],
    "secrets": ["Deploy failed, logs:\n{}", "{}\n# do not commit", "Paste of settings.yaml:\n{}",
                "Can you explain this snippet?\n{}", "config.ini\n{}\n[end]"],
}


def main():
    here = Path(__file__).parent
    for name, seed, templates in [("pii_dev.jsonl", 1401, TEMPLATES_A), ("pii_heldout.jsonl", 9902, TEMPLATES_B)]:
        Faker.seed(seed)
        samples = Builder(seed, templates).build(scale=1)
        with open(here / name, "w", encoding="utf-8") as out:
            for s in samples:
                out.write(json.dumps(s, ensure_ascii=False) + "\n")
        print(name, len(samples))


if __name__ == "__main__":
    main()
