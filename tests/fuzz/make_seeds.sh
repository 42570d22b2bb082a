#!/usr/bin/env bash
# Regenerates the committed seed corpora and dictionaries of the fuzz harnesses
# (docs/fuzzing.md) in tests/fuzz/corpus/<harness>/:
#  * esp_image: small images of every format, valid and damaged, written by
#    make_esp_fuzz_seeds (tests/fuzz/make_esp_seeds.cpp over the test image builder),
#    built in the normal build directory (BUILD_DIR, default build/);
#  * the others: typical requests, bodies and configurations, written below.
# Only seed-* files and *.dict are rewritten; other files in a corpus (inputs
# that once found a defect, regression-*) are kept.
#   usage: tests/fuzz/make_seeds.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
build_dir=${BUILD_DIR:-build}
corpus=tests/fuzz/corpus

if [ ! -f "$build_dir/build.ninja" ] && [ ! -f "$build_dir/Makefile" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOTAD_BUILD_TESTS=ON >/dev/null
fi
cmake --build "$build_dir" --target make_esp_fuzz_seeds >/dev/null
mkdir -p "$corpus/esp_image"
rm -f "$corpus"/esp_image/seed-*
"$build_dir/tests/make_esp_fuzz_seeds" "$corpus/esp_image"

python3 - "$corpus" <<'EOF'
import json, os, re, sys

corpus = sys.argv[1]

def write(harness, name, data):
    os.makedirs(os.path.join(corpus, harness), exist_ok=True)
    with open(os.path.join(corpus, harness, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

def clear(harness):
    d = os.path.join(corpus, harness)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed-"):
            os.remove(os.path.join(d, f))

def dictionary(name, tokens):
    with open(os.path.join(corpus, name + ".dict"), "w") as f:
        f.write("# libFuzzer dictionary of %s_fuzz (written by tests/fuzz/make_seeds.sh)\n" % name)
        for t in tokens:
            f.write('"%s"\n' % "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "\\x%02X" % ord(c) for c in t))

# --- esp_image: magic bytes, the esp_app_desc_t magic word (little-endian), the
# checksum seed, chip ids and load addresses the inspector compares against.
dictionary("esp_image", ["\xe9", "\xea", "\xef", "\xee", "\x32\x54\xcd\xab", "\x00\x00\x40\x3f", "\x20\x00\x40\x3f",
                         "\x00\x00\x10\x40", "\x04\x00\x10\x40", "\x10\x10\x20\x40", "\x10\x10\x28\x40",
                         "\x10\x10\x24\x40", "\x05\x00", "\x09\x00", "\x0c\x00", "\x12\x00", "\xff\xff"])

# --- byte_ranges: byte 0 picks the size ('@' 0, 'B' 2, 'C' 100, 'D' 1000, 'E' 1 MiB,
# 'F' 2^63-1, 'G' 2^64-1; 'L' 1000 with at most one part); then the lines
# Range, If-Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since.
clear("byte_ranges")
etag = '"5d41402abc4b2a76b9719d911017c592"'
date = "Tue, 14 Nov 2023 22:13:20 GMT"
for name, text in {
    "first-100": "Dbytes=0-99",
    "idf-resume": "Dbytes=512-1000",
    "open-end": "Dbytes=500-",
    "suffix": "Dbytes=-500",
    "suffix-zero": "Dbytes=-0",
    "several": "Dbytes=0-1,3-4,6-7,9-10",
    "adjacent-ows": "Dbytes= 0-1 , 2-3 ,, 10-20",
    "unsatisfiable": "Dbytes=1000-",
    "zero-length": "@bytes=0-",
    "other-unit": "Dunits=0-1",
    "upper-case": "DBYTES=0-1",
    "reversed": "Dbytes=5-1",
    "huge-total": "Gbytes=18446744073709551614-",
    "overflow": "Fbytes=99999999999999999999999-",
    "one-part-only": "Lbytes=0-1,5-6",
    "if-range-etag": "Dbytes=0-99\n" + etag,
    "if-range-date": "Dbytes=0-99\n" + date,
    "if-range-weak": "Dbytes=0-99\nW/" + etag,
    "if-match": "D\n\n" + etag + ', "other"',
    "if-match-star": "D\n\n*",
    "if-none-match": "D\n\n\n" + etag,
    "if-none-match-weak-list": "D\n\n\nW/\"x\", W/" + etag,
    "if-modified-since": "D\n\n\n\n" + date,
    "if-modified-since-rfc850": "D\n\n\n\nTuesday, 14-Nov-23 22:13:20 GMT",
    "if-modified-since-asctime": "D\n\n\n\nTue Nov 14 22:13:20 2023",
    "if-unmodified-since": "D\n\n\n\n\nMon, 13 Nov 2023 00:00:00 GMT",
    "all-headers": "Dbytes=0-9,20-29\n" + etag + "\n" + etag + "\n\"nope\"\n" + date + "\n" + date,
}.items():
    write("byte_ranges", name, text)
dictionary("byte_ranges", ["bytes=", "bytes", "-", ",", ", ", "=", "*", "W/", '"', etag, " GMT", "18446744073709551615",
                           "Mon, ", "Tue, ", "Sunday, ", " Nov ", " Feb ", "2023", "22:13:20", "-Nov-23 "])

# --- multipart: byte 0 picks the read size ('@' all at once, 'A' 1 byte, 'C' 7 bytes,
# 'D' 64, 'H' all with a 1 KiB buffer, 'a' 1 byte with at most 2 parts, 'p' small
# header limit; a 4 KiB buffer unless bit 0x80 is set); then the Content-Type line;
# then the body.
clear("multipart")
def form(boundary, parts, preamble="", epilogue="", close="--"):
    out = preamble
    for headers, value in parts:
        out += "--" + boundary + "\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n" + value + "\r\n"
    return out + "--" + boundary + close + "\r\n" + epilogue
field = lambda name, value: (['Content-Disposition: form-data; name="%s"' % name], value)
file_part = lambda content: (['Content-Disposition: form-data; name="file"; filename="app.bin"',
                              "Content-Type: application/octet-stream"], content)
image = "\xe9\x04\x02\x20\x00\x10\x08\x40" + "\x00\x01\x02\x03" * 8
curl_boundary = "------------------------d74496d66958873e"
for name, (mode, ctype, body) in {
    "upload": ("@", "multipart/form-data; boundary=XyZ",
               form("XyZ", [field("chip", "esp32"), field("layout", "ota"), file_part(image)])),
    "upload-1-byte-reads": ("A", "multipart/form-data; boundary=XyZ",
                            form("XyZ", [field("slot", "user1"), file_part(image)])),
    "curl": ("D", "multipart/form-data; boundary=" + curl_boundary,
             form(curl_boundary, [file_part(image), field("version_mismatch", "allow")])),
    "quoted-boundary": ("C", 'Multipart/Form-Data; charset=utf-8; boundary="a b:c"',
                        form("a b:c", [field("replace", "true"), file_part(image)])),
    "preamble-epilogue": ("@", "multipart/form-data; boundary=B",
                          form("B", [file_part(image)], preamble="ignored preamble\r\n", epilogue="trailing words")),
    "padding": ("@", "multipart/form-data; boundary=B",
                "--B \t\r\n" + 'Content-Disposition: form-data; name="file"\r\n\r\ndata\r\n--B--  \r\n'),
    "delimiter-in-content": ("C", "multipart/form-data; boundary=B",
                             form("B", [file_part("a\r\n--Bx\r\n--B-\r\n--")])),
    "small-buffer": ("H", "multipart/form-data; boundary=B",
                     form("B", [file_part("z" * 3000), field("filename", "a.bin")])),
    "too-many-parts": ("a", "multipart/form-data; boundary=B",
                       form("B", [field("chip", "esp32"), field("slot", ""), field("layout", "single")])),
    "long-header": ("p", "multipart/form-data; boundary=B",
                    form("B", [(['Content-Disposition: form-data; name="file"; filename="' + "n" * 80 + '"'], "x")])),
    "no-close": ("@", "multipart/form-data; boundary=B", "--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx"),
    "no-boundary": ("@", "multipart/form-data", "--B--\r\n"),
    "filename-star": ("@", "multipart/form-data; boundary=B",
                      form("B", [(["content-disposition: form-data; name=file; filename*=UTF-8''a%20b.bin"], "x")])),
}.items():
    write("multipart", name, (mode + ctype + "\n" + body).encode("latin-1"))  # one byte per character
# Byte 0 0xC0: the handler's own 256 KiB buffer, the body read all at once.
write("multipart", "handler-buffer", b"\xc0" + ("multipart/form-data; boundary=XyZ\n" +
      form("XyZ", [field("chip", "esp32"), file_part(image)])).encode("latin-1"))
dictionary("multipart", ["\r\n", "--", "\r\n--", "multipart/form-data", "boundary=", "; ", "Content-Disposition:",
                         "form-data", "name=", "filename=", '"', "Content-Type:", "application/octet-stream",
                         "file", "chip", "layout", "slot", "replace", "version_mismatch", " \t"])

# --- request_target: the request-target as sent.
clear("request_target")
sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
for name, text in {
    "poll": "/api/v1/update?product=thermo&chip=esp32c3&version=1.0.0&channel=stable&slot=ota_0",
    "download": "/firmware/thermo/1.2.0/app%20v1.bin",
    "blob-signed": "/api/v1/blobs/" + sha + "?expires=1700003600&sig=AbC-_x",
    "nonos": "/v1/device/rom/?action=download_rom&version=v1.0&filename=user1.bin",
    "nonos-absolute": "http://ota.example.com:8080/v1/device/rom/?is_format_simple=true",
    "user1": "/user1.bin",
    "arduino": "/api/v1/arduino/thermo?key=abc+def&x=%41%zz",
    "operator": "/api/v1/products/thermo/releases?limit=10&cursor=",
    "dot-segment": "/a/%2e%2E/b",
    "encoded-slash": "/a/%2F/b",
    "encoded-nul": "/a%00b",
    "dots": "/a/./b/../c",
    "double-slash": "//api//v1",
    "empty-params": "/x?&&a&=b&c=",
    "asterisk": "*",
    "https-no-path": "https://host",
    "userinfo": "http://user:pw@[::1]:8443/a?b#frag",
}.items():
    write("request_target", name, text)
dictionary("request_target", ["/", "?", "&", "=", "%", "%2F", "%2e", "%00", "+", "#", "..", ".", "http://",
                              "https://", "[::1]", ":8443", "@", "/api/v1/"])

# --- json_body: byte 0 picks the route ('0' PATCH product, '1' PUT channel,
# '2' POST device report, '3' POST device key); the rest is the body.
clear("json_body")
for name, (route, body) in {
    "product-patch": ("0", {"allow_project_mismatch": True}),
    "product-patch-string": ("0", {"allow_project_mismatch": "yes"}),
    "product-patch-unknown": ("0", {"x": 1}),
    "channel-set": ("1", {"version": "1.1.0"}),
    "channel-rollback": ("1", {"version": "1.0.0", "allow_rollback": True}),
    "channel-missing-release": ("1", {"version": "9.9.9", "allow_rollback": False}),
    "channel-number": ("1", {"version": 1}),
    "report-installed": ("2", {"status": "installed", "version": "1.1.0", "detail": "ok"}),
    "report-failed": ("2", {"status": "failed", "version": "1.1.0", "detail": "\u00e9 \U0001F600 flash write error"}),
    "report-rolled-back": ("2", {"status": "rolled_back"}),
    "report-null": ("2", {"status": None, "version": None}),
    "key-create": ("3", {"name": "k2"}),
    "key-chosen-secret": ("3", {"name": "k3", "key": "0123456789abcdef0123456789abcdef"}),
    "key-empty-name": ("3", {"name": ""}),
}.items():
    write("json_body", name, route + json.dumps(body))
for name, text in {"array": "0[]", "not-json": "1{version:1}", "deep": "2" + "[" * 200 + "]" * 200,
                   "duplicate-member": '2{"status":"installed","status":"failed"}',
                   "escapes": '3{"name":"\\u0000\\ud800"}', "empty": "3"}.items():
    write("json_body", name, text)
dictionary("json_body", ['{', '}', '[', ']', '"', ':', ',', 'true', 'false', 'null', '\\u', '\\ud83d\\ude00', '1e999',
                         '-0', '"status"', '"version"', '"detail"', '"name"', '"key"', '"allow_rollback"',
                         '"allow_project_mismatch"', '"installed"', '"installing"', '"downloading"', '"downloaded"',
                         '"failed"', '"rolled_back"', '"1.1.0"', '"1.0.0"'])

# --- config: the file's text, then "%%" and NAME=VALUE environment lines, then
# "%%" and key=value overrides; an empty file part means no file.
clear("config")
with open("config/otad.json") as f:
    documented = f.read()
keys = re.findall(r'^\s*"([a-z_]+)":', documented, re.M)
for name, text in {
    "documented": documented,
    "listeners": '{"listen": "127.0.0.1:8443", "http_listen": "[::1]:8080", "data_dir": "/var/lib/otad"}',
    "comments-and-strings": '// a comment\n{ /* inline */ "io_threads": "4", "tls_hostnames": ["a", "b"],\n'
                            '  "public_url": "https://ota.example.com/" }',
    "environment": "\n%%\nOTAD_LISTEN=0.0.0.0:443\nOTAD_TLS_HOSTNAMES=a, b,,c\nOTAD_MAX_BODY_BYTES=2048\nOTAD_TOKEN=x",
    "overrides": '{"log_level": "debug"}\n%%\n\n%%\npublic_url=http://h/\nworker_threads=8\nlog_format=json',
    "tls-pair": '{"tls_cert": "cert.pem"}',
    "out-of-range": '{"max_body_bytes": 18446744073709551615, "worker_threads": -1}',
    "bad-choice": '{"log_level": "verbose", "signing_algorithm": "rsa"}',
    "unknown-key": '{"listen_port": 8443}',
    "not-object": "[1, 2]",
    "bad-host-port": '{"listen": "[::1]8443", "http_listen": "a:b:c"}',
    "misspelt-env": "\n%%\nOTAD_LISTN=1\n",
}.items():
    write("config", name, text)
dictionary("config", ['"%s"' % k for k in keys] + ["%%", "OTAD_", "=", "//", "/*", "*/", "[::1]:", "127.0.0.1:",
                                                   "https://", "http://", "18446744073709551616", "-1", "true", "null"])
print("make_seeds: text seeds and dictionaries written under", corpus)
EOF
