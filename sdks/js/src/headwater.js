// Headwater's tracking script (the core). Load it with
//   <script defer src="https://collector.example/hw.js" data-key="PUBLIC_WRITE_KEY"></script>
// Options, as data- attributes of that tag:
//   data-api="https://..."     where to send (default: the script's origin)
//   data-id="cookieless"       keep nothing in the browser, no storage at all: the visitor id lives as
//                              long as the page (pair it with the project's privacy.cookieless, which
//                              replaces it with a daily-salted hash on the server)
//   data-consent="required"    send nothing until headwater.consent(true)
// Do Not Track and Global Privacy Control are respected. Nothing here may throw into the page.
((safe) =>
  safe((w, d, n) => {
    const script = d.currentScript;
    const attr = (name) => script.getAttribute("data-" + name);
    const api = (attr("api") || new URL(script.src).origin) + "/v1/hw";
    const cookieless = attr("id") == "cookieless";
    const store = (name, value) => {
      try {
        if (!cookieless) return value === undefined ? localStorage["hw_" + name] : (localStorage["hw_" + name] = value);
      } catch (e) {}
    };
    const uuid = () => crypto.getRandomValues(new Uint32Array(4)).join("-"); // 128 random bits
    const off = n.doNotTrack == "1" || n.globalPrivacyControl;
    let consent = attr("consent") != "required" || store("consent") == "1";
    let anon, user = store("uid"), queue = [], timer, tries = 0, last, referrer = d.referrer;

    const add = (type, name, props, traits) => {
      if (off || !consent) return;
      if (!anon) store("aid", (anon = store("aid") || uuid()));
      const s = w.screen;
      // serialized now, so that an event that cannot be (a circular property) is dropped alone
      queue.push(JSON.stringify({
        t: type, n: name, p: props, tr: traits, a: anon, u: user, m: uuid(), ts: Date.now(),
        c: {
          u: location.href, r: referrer, sw: s.width, sh: s.height, l: n.language,
          tz: Intl.DateTimeFormat().resolvedOptions().timeZone,
        },
      }));
      if (queue.length > 500) queue.shift();
      timer = timer || setTimeout(send, 1000);
    };

    // Batches of up to 50 events; when the page is being hidden, all of them, by sendBeacon.
    // Other refusals (400, 401, 403, 413) would fail again and are dropped; the rest retry with
    // backoff (1 s doubling), up to 8 times.
    const send = safe((hiding) => {
      clearTimeout(timer);
      timer = 0;
      if (!queue.length) return;
      const batch = queue.splice(0, hiding ? 1e9 : 50);
      const body = `{"k":"${attr("key")}","s":${Date.now()},"e":[${batch}]}`; // keys are [A-Za-z0-9_-]
      if (hiding && n.sendBeacon(api, body)) return;
      fetch(api, { method: "POST", body, keepalive: true })
        .then((reply) => {
          if (reply.status > 428) throw 0; // 429 and 5xx: try again later
          tries = 0;
        })
        .catch(() => {
          queue = batch.concat(queue);
          if (tries < 8) timer = setTimeout(send, 1e3 << tries++);
        });
      if (queue.length) timer = setTimeout(send);
    });

    const page = safe(() => {
      if (location.href == last) return;
      if (last) referrer = last;
      last = location.href;
      add("p");
    });

    for (const name of ["pushState", "replaceState"]) {
      const original = history[name];
      history[name] = function () {
        const result = original.apply(this, arguments);
        page();
        return result;
      };
    }
    w.addEventListener("popstate", page);
    // the last event a closing or backgrounded page reliably sees (pagehide is not, on mobile)
    d.addEventListener("visibilitychange", () => d.hidden && send(1));

    w.headwater = {
      track: safe((name, props) => add("t", name, props)),
      identify: safe((id, traits) => {
        store("uid", (user = "" + id));
        add("i", undefined, undefined, traits);
      }),
      page,
      consent: safe((yes) => {
        if (!consent) last = 0; // record the page view that was held back
        consent = yes;
        store("consent", yes ? 1 : 0);
        page();
      }),
    };
    page();
  })(window, document, navigator))((f) => (...args) => {
  try {
    return f(...args);
  } catch (e) {}
});
