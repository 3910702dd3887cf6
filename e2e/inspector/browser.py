#!/usr/bin/env python3
"""A headless stand-in for the person at the browser: the Inspector opens the
authorization URL with $BROWSER (xdg-open's convention); this script follows
it through AuthPlane's real login and consent pages (form fields and CSRF
tokens read from the HTML), approves, and follows the redirect to the
Inspector's loopback callback, which hands the code back to the Inspector.
Standard library only; every hop is on 127.0.0.1. Its log goes to
$E2E_BROWSER_LOG.
"""

import http.cookiejar
import os
import re
import sys
import urllib.parse
import urllib.request

log = open(os.environ.get("E2E_BROWSER_LOG", "/dev/null"), "a")


def say(*a):
    print(*a, file=log, flush=True)


def main():
    url = sys.argv[-1]
    say("open", url.split("?")[0])
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(url, timeout=20)
    html = page.read().decode()
    say("landed", page.geturl().split("?")[0], page.status)
    for _ in range(3):
        form = {}
        for name in ("request", "csrf"):
            m = re.search(rf'name="{name}" value="([^"]+)"', html)
            if m:
                form[name] = m.group(1)
        if 'name="password"' in html:
            form.update(username=os.environ["E2E_USER"], password=os.environ["E2E_PASSWORD"])
            action = "/ui/login"
        elif 'name="decision"' in html:
            form["decision"] = "approve"
            action = "/ui/consent"
        else:
            break
        base = urllib.parse.urlsplit(page.geturl())
        target = f"{base.scheme}://{base.netloc}{action}"
        page = opener.open(target, data=urllib.parse.urlencode(form).encode(), timeout=20)
        html = page.read().decode(errors="replace")
        say("posted", action, "->", page.geturl().split("?")[0], page.status)
    say("done", page.geturl().split("?")[0])


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the Inspector times out and the suite reports it
        say("error", repr(e))
        sys.exit(1)
