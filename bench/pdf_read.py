#!/usr/bin/env python3
"""What reading a PDF costs: `robeing read-pdf`, the child process the server
runs for every PDF a user sends (src/pdf.rs).

Builds PDFs of 1, 10 and 100 pages (40 lines of text each, Helvetica) and a
page without text, then runs the binary on each N times, the way the server
does (bytes on stdin, no environment), and prints the median wall time, the
child's CPU (user + system) and the largest resident size (ru_maxrss) per
document. Usage:
  cargo build --release && python3 bench/pdf_read.py [--runs 21] [--binary target/release/robeing]
"""
import argparse, os, resource, statistics, subprocess, time

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


def run(binary, data):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    p = subprocess.run([binary, "read-pdf"], input=data, capture_output=True, env={})
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return p, wall, cpu, after.ru_maxrss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--binary", default="target/release/robeing")
    a = ap.parse_args()
    docs = [("1 page", pdf(1, 40)), ("10 pages", pdf(10, 40)), ("100 pages", pdf(100, 40)), ("no text", pdf(1, 0))]
    print("| document | size | text out | wall p50 | CPU p50 | max RSS (any run so far) | exit |")
    print("|---|---|---|---|---|---|---|")
    for name, data in docs:
        walls, cpus, rss, out, code = [], [], 0, 0, None
        for _ in range(a.runs):
            p, wall, cpu, maxrss = run(a.binary, data)
            walls.append(wall)
            cpus.append(cpu)
            rss = max(rss, maxrss)
            out, code = len(p.stdout), p.returncode
        print("| %s | %.1f KiB | %d B | %.1f ms | %.1f ms | %.1f MiB | %s |" % (
            name, len(data) / 1024, out, statistics.median(walls) * 1000, statistics.median(cpus) * 1000,
            rss / 1024, code))


if __name__ == "__main__":
    os.environ.setdefault("LC_ALL", "C")
    main()
