#!/usr/bin/env python3
"""What reading a document costs: `robeing read-pdf` (`read-document` since
session 19; the old name still works, so older binaries can be measured
too), the child process the server runs for every PDF or Office file a user
sends (src/documents/).

Builds PDFs of 1, 10 and 100 pages (40 lines of text each, Helvetica) and a
page without text, Word files of 10 and 100 pages' worth of paragraphs and
Excel workbooks of 1,000 and 10,000 rows (5 columns, shared strings), Hangul
.hwpx and .hwp files of 4,000 paragraphs (with python-hwpx, when it is
installed: `pip install python-hwpx`), Word 97 .doc, RTF and PowerPoint 97
.ppt files of 4,000 paragraphs and 100 slides (with LibreOffice's soffice, when it
is installed), reads the real Korean PDFs, Hangul files, the budget workbook
(.xls and .xlsx), the memo (.doc, .docx and .rtf) and the plan (.ppt and .pptx) in
tests/fixtures/documents, then runs the binary on
each N times, the way the server does (bytes on stdin, no environment), and
prints the median wall time, the child's CPU (user + system), the largest
resident size (GNU time's %M) and how many runs failed, per document. The
child gets the one environment variable the server gives it (session 20:
MIMALLOC_ARENA_EAGER_COMMIT=0); --bare runs it with none, as servers before
session 20 did. Usage:
  cargo build --release && python3 bench/document_read.py [--runs 21] [--binary target/release/robeing] [--pdf-only]
"""
import argparse, io, os, resource, statistics, subprocess, time, zipfile
from xml.sax.saxutils import escape

LINE = "Quarterly report: revenue grew 12 percent to 4.2 billion won, costs fell 3 percent."


def pdf(pages, lines_per_page):
    """A valid PDF 1.4 with `pages` pages of `lines_per_page` lines each."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", None,
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"]
    kids = []
    for p in range(pages):
        content = "BT /F1 10 Tf 12 TL 50 760 Td\n"
        for n in range(lines_per_page):
            content += "(Page %d line %d. %s) Tj T*\n" % (p + 1, n + 1, LINE)
        content += "ET\n"
        objects.append("<< /Length %d >>\nstream\n%sendstream" % (len(content), content))
        content_id = len(objects)
        objects.append("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                       "/Resources << /Font << /F1 3 0 R >> >> >>" % content_id)
        kids.append("%d 0 R" % len(objects))
    objects[1] = "<< /Type /Pages /Kids [%s] /Count %d >>" % (" ".join(kids), pages)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects):
        offsets.append(len(out))
        out += ("%d 0 obj\n%s\nendobj\n" % (i + 1, body)).encode()
    xref = len(out)
    out += ("xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)).encode()
    for o in offsets:
        out += ("%010d 00000 n \n" % o).encode()
    out += ("trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)).encode()
    return bytes(out)


def zipped(entries):
    """A ZIP archive (deflated) of {name: text}."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in entries.items():
            z.writestr(name, text)
    return buf.getvalue()


W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def docx(paragraphs):
    """A Word body of `paragraphs` paragraphs, each split into two runs as Word does."""
    body = "".join(
        '<w:p><w:pPr><w:pStyle w:val="Normal"/></w:pPr><w:r><w:rPr><w:b/></w:rPr><w:t>Line %d.</w:t></w:r>'
        '<w:r><w:t xml:space="preserve"> %s</w:t></w:r></w:p>' % (n + 1, escape(LINE)) for n in range(paragraphs))
    return zipped({"[Content_Types].xml": "<Types/>",
                   "word/document.xml": '<?xml version="1.0"?><w:document %s><w:body>%s</w:body></w:document>' % (W, body)})


S = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
R = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'


def xlsx(rows):
    """A workbook of one sheet: `rows` rows of a text cell (shared), three numbers and a text cell."""
    shared = ["Item %d" % n for n in range(rows)] + ["paid", "due"]
    cells = "".join(
        '<row r="%d"><c r="A%d" t="s"><v>%d</v></c><c r="B%d"><v>%d</v></c><c r="C%d"><v>%.2f</v></c>'
        '<c r="D%d"><v>%d</v></c><c r="E%d" t="s"><v>%d</v></c></row>'
        % (n + 1, n + 1, n, n + 1, n * 7, n + 1, n * 1.5, n + 1, 2026, n + 1, rows + n % 2) for n in range(rows))
    return zipped({
        "[Content_Types].xml": "<Types/>",
        "xl/workbook.xml": '<workbook %s %s><sheets><sheet name="Data" sheetId="1" r:id="rId1"/></sheets></workbook>' % (S, R),
        "xl/_rels/workbook.xml.rels": '<Relationships><Relationship Id="rId1" Target="worksheets/sheet1.xml"/></Relationships>',
        "xl/sharedStrings.xml": "<sst %s>%s</sst>" % (S, "".join("<si><t>%s</t></si>" % s for s in shared)),
        "xl/worksheets/sheet1.xml": "<worksheet %s><sheetData>%s</sheetData></worksheet>" % (S, cells),
    })


def hangul(paragraphs):
    """An .hwpx and an .hwp of `paragraphs` paragraphs, made by python-hwpx; none without it."""
    try:
        from hwpx.document import HwpxDocument
    except ImportError:
        return []
    doc = HwpxDocument.new()
    for n in range(paragraphs):
        doc.add_paragraph("%d번째 줄. 매출이 12%% 늘어 42억 원이 되었습니다. %s" % (n + 1, LINE))
    hwpx, hwp = io.BytesIO(), io.BytesIO()
    doc.save_to_stream(hwpx)
    doc.save_to_stream(hwp, format="hwp")
    name = "%s paragraphs (100 pages)" % format(paragraphs, ",")
    return [("HWPX, " + name, hwpx.getvalue()), ("HWP, " + name, hwp.getvalue())]


# The child's peak resident size, from GNU time (Debian's `time` package):
# this process's own ru_maxrss for children counts the copy of this (large)
# Python process that a fork makes before the exec.
GNU_TIME = "/usr/bin/time"


def by_libreoffice(paragraphs, slides):
    """A Word 97 .doc and an RTF file of `paragraphs` paragraphs and a PowerPoint 97 .ppt of `slides`
    slides, flat OpenDocument files converted by LibreOffice's soffice; none without it."""
    import shutil, tempfile
    soffice = shutil.which("soffice")
    if not soffice:
        return []
    pages = "".join(
        '<draw:page draw:name="p%d"><draw:frame svg:x="1cm" svg:y="1cm" svg:width="20cm" svg:height="3cm">'
        '<draw:text-box><text:p>Slide %d</text:p></draw:text-box></draw:frame>'
        '<draw:frame svg:x="1cm" svg:y="5cm" svg:width="20cm" svg:height="10cm"><draw:text-box>%s</draw:text-box>'
        '</draw:frame></draw:page>' % (n, n, "".join("<text:p>%s</text:p>" % escape(LINE) for _ in range(6)))
        for n in range(1, slides + 1))
    fodp = ('<?xml version="1.0" encoding="UTF-8"?><office:document '
            'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
            'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
            'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
            'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" office:version="1.3" '
            'office:mimetype="application/vnd.oasis.opendocument.presentation">'
            '<office:body><office:presentation>%s</office:presentation></office:body></office:document>' % pages)
    fodt = ('<?xml version="1.0" encoding="UTF-8"?><office:document '
            'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
            'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.3" '
            'office:mimetype="application/vnd.oasis.opendocument.text"><office:body><office:text>%s'
            '</office:text></office:body></office:document>' % ("<text:p>%s</text:p>" % escape(LINE) * paragraphs))
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "words.fodt"), "w") as f:
            f.write(fodt)
        with open(os.path.join(d, "slides.fodp"), "w") as f:
            f.write(fodp)
        for source, target in (("words.fodt", "doc:MS Word 97"), ("words.fodt", "rtf"),
                               ("slides.fodp", "ppt:MS PowerPoint 97")):
            subprocess.run([soffice, "--headless", "--convert-to", target, "--outdir", d, os.path.join(d, source)],
                           capture_output=True, check=True)
        with open(os.path.join(d, "words.doc"), "rb") as f:
            doc = f.read()
        with open(os.path.join(d, "words.rtf"), "rb") as f:
            rtf = f.read()
        with open(os.path.join(d, "slides.ppt"), "rb") as f:
            ppt = f.read()
    n = format(paragraphs, ",")
    return [("Word 97 .doc, %s paragraphs" % n, doc), ("RTF, %s paragraphs" % n, rtf),
            ("PowerPoint 97 .ppt, %d slides" % slides, ppt)]


def run(binary, data, env):
    """One read: the process, wall and CPU seconds, and the child's peak RSS in KiB (None without GNU time)."""
    timed = os.path.exists(GNU_TIME)
    command = ([GNU_TIME, "-f", "maxrss-kib %M"] if timed else []) + [binary, "read-pdf"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    p = subprocess.run(command, input=data, capture_output=True, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rss = None
    if timed:
        last = p.stderr.decode(errors="replace").strip().splitlines()[-1:]
        if last and last[0].startswith("maxrss-kib "):
            rss = int(last[0].split()[1])
    return p, wall, cpu, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--binary", default="target/release/robeing")
    ap.add_argument("--pdf-only", action="store_true", help="PDFs only (binaries from before session 19)")
    ap.add_argument("--bare", action="store_true", help="no environment at all (servers before session 20)")
    a = ap.parse_args()
    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "documents")
    docs = [("1 page", pdf(1, 40)), ("10 pages", pdf(10, 40)), ("100 pages", pdf(100, 40)), ("no text", pdf(1, 0))]
    for name in ("korean-memo-chromium.pdf", "korean-memo-libreoffice.pdf"):
        with open(os.path.join(fixtures, name), "rb") as f:
            docs.append((name, f.read()))
    if not a.pdf_only:
        docs += [("Word, 400 paragraphs (10 pages)", docx(400)), ("Word, 4,000 paragraphs (100 pages)", docx(4000)),
                 ("Excel, 1,000 rows", xlsx(1000)), ("Excel, 10,000 rows", xlsx(10000))]
        for name in ("korean-memo-python-hwpx.hwpx", "korean-memo-python-hwpx.hwp", "korean-memo-distribution.hwp",
                     "budget-libreoffice.xls", "budget-libreoffice.xlsx", "korean-memo-libreoffice.doc",
                     "korean-memo-libreoffice.docx", "korean-memo-libreoffice.rtf", "plan-libreoffice.ppt",
                     "plan-python-pptx.pptx"):
            with open(os.path.join(fixtures, name), "rb") as f:
                docs.append((name, f.read()))
        docs += hangul(4000)
        docs += by_libreoffice(4000, 100)
    env = {} if a.bare else {"MIMALLOC_ARENA_EAGER_COMMIT": "0"}
    print("| document | size | text out | wall p50 | CPU p50 | child max RSS | failed runs |")
    print("|---|---|---|---|---|---|---|")
    for name, data in docs:
        walls, cpus, rss, out, failed = [], [], 0, 0, 0
        for _ in range(a.runs):
            p, wall, cpu, maxrss = run(a.binary, data, env)
            walls.append(wall)
            cpus.append(cpu)
            rss = max(rss, maxrss or 0)
            if p.returncode == 0:
                out = len(p.stdout)
            else:
                failed += 1
        print("| %s | %.1f KiB | %d B | %.1f ms | %.1f ms | %.1f MiB | %d of %d |" % (
            name, len(data) / 1024, out, statistics.median(walls) * 1000, statistics.median(cpus) * 1000,
            rss / 1024 if rss else float("nan"), failed, a.runs))


if __name__ == "__main__":
    os.environ.setdefault("LC_ALL", "C")
    main()
