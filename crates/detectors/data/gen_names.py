#!/usr/bin/env python3
"""Regenerates given_names.txt and surnames.txt.

Source: the US Census Bureau 1990 name frequency files (public domain), as shipped in the
PyPI package `names` 0.3.0 (MIT licence): `pip download names==0.3.0 --no-deps`, unpack, then
`python3 gen_names.py path/to/names-0.3.0/names`.
Keeps every male first name, the 2,000 most frequent female first names and the 5,000 most
frequent surnames, minus common English words (a name must not be an ordinary word when it
is capitalised at the start of a sentence).
"""
import sys, os

STOP = set("""
will may june april august mark bill hope grace joy rose faith else art guy jack
dean major rich earl sun lane young long king white black brown green gray grey
hall wood stone rock hill hunter page cook hunt rice price love star sky chance
summer winter autumn dawn eve ivy iris lily daisy ruby pearl amber crystal jewel
golden silver gold case bell park lee way best bond ward hart read reading field
west north south east early little short small large gay bright sharp strong
law story nice sweet noble able ray max miles more much worth cash gross sale
don ben van von del de la le do so an as is it in on or no us am at be by go he
me my of to we oh ok hi ho lo ma pa ed al
""".split())

def read(path, limit):
    out = []
    for line in open(path):
        name = line.split()[0].lower()
        if name.isalpha() and len(name) >= 3 and name not in STOP:
            out.append(name)
        if len(out) >= limit:
            break
    return out

d = sys.argv[1]
given = sorted(set(read(os.path.join(d, "dist.male.first"), 10**6) +
                   read(os.path.join(d, "dist.female.first"), 2000)))
surnames = sorted(set(read(os.path.join(d, "dist.all.last"), 5000)))
open("given_names.txt", "w").write("\n".join(given) + "\n")
open("surnames.txt", "w").write("\n".join(surnames) + "\n")
print(len(given), len(surnames))
