#!/usr/bin/env python3
"""Writes a PDF of N pages of text (Helvetica, uncompressed content streams, no dependency),
for the document benchmarks of issue 21: build/bench-documents makes a 300-page one.

usage: make-test-pdf.py OUT.pdf PAGES [SEED]

Each page has a heading ("Section k") and 40 lines of about 90 characters drawn from a fixed
French and English vocabulary with a seeded generator, so the file is the same on every run.
"""
import random
import sys

WORDS = (
    "le la les des une pour dans avec sur rapport mission convoi port navire frigate logistics "
    "the of and to report depot supply route weather mistral escort harbour fuel rations "
    "inventory analyse renseignement zone secteur unite patrouille radar signal transmission "
    "schedule dawn dusk north south east west sector unit patrol command liaison officer "
    "message exercise deployment maintenance spare parts vehicle truck amphibious aircraft"
).split()


def esc(s):
    return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def main():
    out, pages = sys.argv[1], int(sys.argv[2])
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 21)
    objs = []  # bodies, object i+1

    def add(body):
        objs.append(body)
        return len(objs)

    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    pages_id = add(b"")  # filled below
    kids = []
    for p in range(1, pages + 1):
        lines = [f"BT /F1 14 Tf 50 800 Td (Section {p}) Tj ET"]
        y = 770
        for _ in range(40):
            text = " ".join(rng.choice(WORDS) for _ in range(14)).capitalize() + "."
            lines.append(f"BT /F1 9 Tf 50 {y} Td ({esc(text)}) Tj ET")
            y -= 18
        stream = "\n".join(lines).encode()
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        kids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 595 842] "
                b"/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
                % (pages_id, font, content)
            )
        )
    objs[pages_id - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    catalog = add(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id)
    data = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(data))
        data += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(data)
    data += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for o in offsets:
        data += b"%010d 00000 n \n" % o
    data += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objs) + 1,
        catalog,
        xref,
    )
    with open(out, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
