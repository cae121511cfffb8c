// Headwater's tag manager runtime. The collector compiles it with a container's definition, as a JSON
// literal in place of __HW_CONTAINER__ (headwater/tags/compile.py), and serves it as
//   <script async src="https://collector.example/tm/PROJECT/CONTAINER.js"></script>
// Triggers are tested on each event (page view, click, form submit, a pushed event, a timer's tick, a
// scroll depth, an element coming into view); a tag fires when one of its triggers matched and none
// of its exceptions did, highest priority first. A tag that throws is reported and the rest go on.
// Consent: a tag with a category waits until it is granted (hwDataLayer.push({consent: {CATEGORY:
// true}}), or the tracker's headwater.consent(true) for all), and never fires under Do Not Track or
// Global Privacy Control. Preview: ?hw_tm_preview=TOKEN on a page loads the draft in this tab only,
// with a debug panel; ?hw_tm_preview=0 ends it.
((C) => {
  const w = window, d = document, n = navigator, loc = location;
  const safe = (f) => (...args) => {
    try {
      return f(...args);
    } catch (e) {}
  };
  const src = (d.currentScript || {}).src || "";
  const make = (tag) => d.createElement(tag);
  const previewKey = "hw_tm_preview_" + C.c;
  const session = safe((v) => (v === undefined ? sessionStorage[previewKey] : (sessionStorage[previewKey] = v))); // "": none
  const asked = new URLSearchParams(loc.search).get("hw_tm_preview");
  if (asked != null) session(asked == "0" ? "" : asked);
  if (C.expired) session("");
  if (!C.preview && session() && src) {
    const s = make("script");
    s.src = src.split("?")[0] + "?preview=" + encodeURIComponent(session());
    return d.head.appendChild(s);
  }

  const local = safe((k, v) => (v === undefined ? localStorage[k] : (localStorage[k] = v)));
  const off = n.doNotTrack == "1" || n.globalPrivacyControl;
  const granted = JSON.parse(local("hw_tm_consent") || "{}");
  const allowed = (category) => !category || (!off && (granted[category] || local("hw_consent") == "1"));
  const state = ((w.hwTagManager = w.hwTagManager || {})[C.c] = { version: C.v, preview: C.preview, log: [] });
  let panel;
  const note = (line) => {
    state.log.push(line);
    render();
  };
  const render = () => {
    if (C.preview && d.body) {
      if (!panel) {
        panel = d.body.appendChild(make("pre"));
        panel.id = "hw-tm-debug";
        panel.style.cssText = "position:fixed;bottom:0;right:0;max-height:40%;overflow:auto;background:#111;color:#eee;z-index:2147483647";
      }
      panel.textContent = "Headwater preview: " + C.c + " (draft)\n" + state.log.join("\n");
    }
  };

  // the data layer: pushed objects merge into the model (objects recursively, the rest overwrites)
  const model = {};
  const merge = (into, from) => {
    for (const k of Object.keys(from)) {
      const v = from[k];
      if (v && typeof v == "object" && !Array.isArray(v) && into[k] && typeof into[k] == "object") merge(into[k], v);
      else into[k] = v;
    }
  };

  const parts = (u) => ({ href: u.href, protocol: u.protocol.slice(0, -1), host: u.host, path: u.pathname, query: u.search.slice(1), fragment: u.hash.slice(1) });
  const own = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
  const text = (el) => (el ? el.textContent.trim() : "");
  const kinds = {
    url: (v) => parts(loc)[v.part],
    query: (v) => new URLSearchParams(loc.search).get(v.name),
    referrer: () => d.referrer,
    cookie: (v) => {
      for (const c of d.cookie.split("; ")) {
        const i = c.indexOf("=");
        if (decodeURIComponent(c.slice(0, i)) == v.name) return decodeURIComponent(c.slice(i + 1));
      }
    },
    data_layer: (v) => v.key.split(".").reduce((o, k) => (o != null && own(o, k) ? o[k] : undefined), model),
    element: (v, e) => {
      const el = v.selector ? d.querySelector(v.selector) : e.el;
      return el && (v.attribute ? el.getAttribute(v.attribute) : text(el));
    },
    constant: (v) => v.value,
    lookup: (v, e) => {
      const k = value(v.input, e);
      return own(v.table, k) ? v.table[k] : v.default;
    },
  };
  const builtIn = {
    event: (e) => e.name,
    referrer: () => d.referrer,
    element_text: (e) => text(e.el),
    element_url: (e) => e.el && (e.el.href || e.el.action),
    element_id: (e) => e.el && e.el.id,
    element_classes: (e) => e.el && e.el.getAttribute("class"),
    scroll_percent: (e) => e.percent,
  };
  const value = (name, e) => {
    const r = own(C.variables, name)
      ? kinds[C.variables[name].kind](C.variables[name], e)
      : name.startsWith("page_") // page_url, page_host, page_path, page_query
        ? parts(loc)[name == "page_url" ? "href" : name.slice(5)]
        : builtIn[name](e);
    return r == null ? "" : "" + r;
  };
  const ops = {
    equals: (a, b) => a == b,
    contains: (a, b) => a.includes(b),
    starts_with: (a, b) => a.startsWith(b),
    ends_with: (a, b) => a.endsWith(b),
    regex: (a, b) => new RegExp(b).test(a),
    gt: (a, b) => +a > +b,
    lt: (a, b) => +a < +b,
    exists: (a) => a != "",
  };
  const holds = (c, e) => {
    const not = c.op.startsWith("not_");
    return ops[not ? c.op.slice(4) : c.op](value(c.variable, e), c.value) != not;
  };

  // what a trigger makes of an event: the event with its element, or nothing
  const at = (e, el) => el && Object.assign({}, e, { el });
  const match = (t, name, e) => {
    let el = e.target;
    if (e.only) return e.only == name && e;
    if (t.kind == "pageview" || t.kind == "custom_event") return e.kind == t.kind && (t.kind == "pageview" || e.name == t.event) && e;
    if (t.kind == "form_submit") return e.kind == "submit" && (!t.selector || el.matches(t.selector)) && at(e, el);
    if (e.kind != "click" || (t.kind != "click" && t.kind != "link")) return;
    if (t.kind == "click") return at(e, t.selector ? el.closest(t.selector) : el);
    el = el.closest(t.selector || "a[href]");
    if (!el || !el.href) return;
    const u = new URL(el.href, loc.href);
    if (t.links == "outbound" ? u.host == loc.host : t.links == "download" && !t.extensions.includes(u.pathname.split(".").pop().toLowerCase())) return;
    return at(e, el);
  };

  let loading, waiting = [];
  const tracker = (f) => {
    if (w.headwater) return f(w.headwater);
    waiting.push(f);
    if (loading) return;
    loading = make("script");
    loading.src = new URL(src).origin + "/hw.js";
    loading.setAttribute("data-key", C.key);
    loading.onload = () => waiting.splice(0).forEach((g) => g(w.headwater));
    d.head.appendChild(loading);
  };
  const resolve = (v, e) => (typeof v == "object" ? value(v.var, e) : v);
  const fill = (url, e) => url.replace(/\{\{([^}]*)\}\}/g, (_, name) => encodeURIComponent(value(name, e)));
  const tags = {
    event: (tag, e) => {
      const props = {};
      for (const k of Object.keys(tag.properties)) props[k] = resolve(tag.properties[k], e);
      tracker((hw) => (tag.type == "identify" ? hw.identify(resolve(tag.user_id, e), props) : tag.type == "page" ? hw.page() : hw.track(tag.event, props)));
    },
    pixel: (tag, e) => {
      new Image().src = fill(tag.url, e);
    },
    script: (tag, e) => {
      const s = make("script");
      s.src = fill(tag.url, e);
      d.head.appendChild(s);
    },
    html: (tag) => {
      const box = make("div");
      box.innerHTML = tag.code;
      // scripts parsed by innerHTML do not run: each is made again, and runs once the box is placed
      for (const old of box.querySelectorAll("script")) {
        const s = make("script");
        for (const a of old.attributes) s.setAttribute(a.name, a.value);
        s.text = old.text;
        old.replaceWith(s);
      }
      let failed;
      const caught = (ev) => (failed = failed || ev.error || ev.message);
      w.addEventListener("error", caught);
      d.body.appendChild(box);
      w.removeEventListener("error", caught);
      if (failed) throw failed;
    },
  };

  const fired = {}, held = [];
  const fire = (name, tag, e) => {
    if (tag.fire == "once_per_page" && fired[name]) return;
    if (!allowed(tag.consent)) {
      if (!off) held.push([name, tag, e]);
      return note("  " + name + ": waits for consent to " + tag.consent);
    }
    fired[name] = 1;
    try {
      tags[tag.kind](tag, e);
      note("  " + name + ": fired");
    } catch (err) {
      note("  " + name + ": failed: " + err);
    }
  };
  const run = (e) => {
    const hit = {};
    e.name = e.name || e.kind;
    for (const [name, t] of C.triggers) {
      try {
        const x = match(t, name, e);
        if (x && t.conditions.every((c) => holds(c, x))) hit[name] = x;
      } catch (err) {
        note("  trigger " + name + ": failed: " + err);
      }
    }
    const names = Object.keys(hit);
    if (names.length) note(e.name + ": " + names.join(", "));
    for (const [name, tag] of C.tags) {
      const via = tag.triggers.find((t) => hit[t]);
      if (via && !tag.exceptions.some((t) => hit[t])) fire(name, tag, hit[via]);
    }
  };
  const consent = (given) => {
    Object.assign(granted, given);
    local("hw_tm_consent", JSON.stringify(granted));
    held.splice(0).forEach((h) => fire(...h));
  };
  const push = safe((m) => {
    if (!m || typeof m != "object") return;
    merge(model, m);
    if (m.consent && typeof m.consent == "object") consent(m.consent);
    if (typeof m.event == "string") run({ kind: "custom_event", name: m.event });
  });

  let last;
  const page = safe(() => {
    if (loc.href == last) return;
    last = loc.href;
    run({ kind: "pageview" });
  });
  for (const k of ["pushState", "replaceState"]) {
    const original = history[k];
    history[k] = function () {
      const r = original.apply(this, arguments);
      page();
      return r;
    };
  }
  w.addEventListener("popstate", page);
  for (const kind of ["click", "submit"]) d.addEventListener(kind, safe((ev) => run({ kind, target: ev.target })), true);

  const queue = (w.hwDataLayer = w.hwDataLayer || []);
  queue.forEach(push);
  queue.push = (...messages) => {
    messages.forEach(push);
    return Array.prototype.push.apply(queue, messages);
  };
  page();

  const ready = safe(() => {
    const reached = {};
    const scrolled = safe(() => {
      const percent = ((w.scrollY + w.innerHeight) / d.documentElement.scrollHeight) * 100;
      for (const [name, t] of C.triggers) {
        for (const p of t.kind == "scroll" ? t.percents : []) {
          if (percent >= p && !reached[name + p]) {
            reached[name + p] = 1;
            run({ kind: "scroll", only: name, percent: p });
          }
        }
      }
    });
    w.addEventListener("scroll", scrolled, { passive: true });
    scrolled();
    for (const [name, t] of C.triggers) {
      if (t.kind == "timer") {
        let ticks = 0;
        const id = setInterval(() => {
          if (++ticks >= t.limit) clearInterval(id);
          run({ kind: "timer", only: name });
        }, t.interval_ms);
      }
      if (t.kind == "visible") {
        const seen = new IntersectionObserver(
          (entries) =>
            entries.forEach((en) => {
              if (!en.isIntersecting) return;
              seen.unobserve(en.target);
              run({ kind: "visible", only: name, el: en.target });
            }),
          { threshold: t.ratio },
        );
        d.querySelectorAll(t.selector).forEach((el) => seen.observe(el));
      }
    }
    render(); // the panel, once there is a body
  });
  d.readyState == "loading" ? d.addEventListener("DOMContentLoaded", ready) : ready();
})(__HW_CONTAINER__);
