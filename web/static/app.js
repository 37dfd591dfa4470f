// seedqa: answers without a page reload. The page works without this file (the form does a
// GET and the server renders the results); this only makes it quicker. Every piece of text
// from the question or the articles is inserted as a text node, never as HTML.
"use strict";

(function () {
  const form = document.getElementById("ask-form");
  const results = document.getElementById("results");
  const status = document.getElementById("status");
  if (!form || !results || !status || !window.fetch || !window.history) {
    return;
  }
  const input = form.elements.namedItem("q");
  const kSelect = form.elements.namedItem("k");

  // Kept in step with web/render.py, so both paths highlight the same words.
  const STOPWORDS = new Set((
    "a an and are as at be been but by can could did do does for from had has have how i if " +
    "in into is it its me my no not of on or our so than that the their them then there these " +
    "they this those to was we were what when where which who whom whose why will with would " +
    "you your about after before tell give list name").split(" "));

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      node.setAttribute(key, value);
    }
    for (const child of children || []) {
      node.append(child);
    }
    return node;
  }

  function escapeRegExp(text) {
    return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }

  function questionTerms(question) {
    const words = new Set((question.toLowerCase().match(/[\p{L}\p{N}_]+/gu) || []));
    const kept = [...words].filter(
      (w) => !STOPWORDS.has(w) && (w.length > 2 || /[^\x00-\x7f]/.test(w)));
    return kept.sort((a, b) => b.length - a.length || (a < b ? -1 : 1));
  }

  function highlight(text, question) {
    const fragment = document.createDocumentFragment();
    const terms = questionTerms(question);
    if (!terms.length) {
      fragment.append(text);
      return fragment;
    }
    const parts = terms.map((t) =>
      /^[\x00-\x7f]*$/.test(t) ? "\\b" + escapeRegExp(t) + "[\\p{L}\\p{N}_]*" : escapeRegExp(t));
    const pattern = new RegExp(parts.join("|"), "giu");
    let pos = 0;
    for (const match of text.matchAll(pattern)) {
      fragment.append(text.slice(pos, match.index));
      fragment.append(el("mark", {}, [match[0]]));
      pos = match.index + match[0].length;
    }
    fragment.append(text.slice(pos));
    return fragment;
  }

  function documentUrl(source, start, end, q) {
    const path = source.split("/").map(encodeURIComponent).join("/");
    const params = new URLSearchParams({ start: String(start), end: String(end) });
    if (q) {
      params.set("q", q);
    }
    return "/documents/" + path + "?" + params.toString() + "#hl";
  }

  function renderAnswer(data, q) {
    if (data.answer) {
      const a = data.answer;
      const cited = data.passages.find((p) => p.source === a.source && p.title);
      // The short answer, when there is one, is shown in bold inside the quoted sentence.
      const parts = a.span
        ? [a.text.slice(0, a.span.start - a.start),
           el("strong", { class: "answer-span" }, [a.span.text]),
           a.text.slice(a.span.end - a.start)]
        : [a.text];
      const text = el("p", { class: "answer-text" }, parts);
      for (const n of a.citations) {
        text.append(" ");
        text.append(el("a", { class: "cite", href: "#p" + n, "aria-label": "see passage " + n },
          ["[" + n + "]"]));
      }
      return el("section", { class: "answer", "aria-labelledby": "answer-heading" }, [
        el("h2", { id: "answer-heading" }, ["Answer"]),
        text,
        el("p", { class: "answer-source" }, [
          "Quoted from ",
          el("a", { href: documentUrl(a.source, a.start, a.end, q) }, [cited ? cited.title : a.source]),
          ", characters " + a.start + "–" + a.end,
        ]),
      ]);
    }
    if (data.abstain_reason) {
      return el("section", { class: "answer abstain", "aria-labelledby": "answer-heading" }, [
        el("h2", { id: "answer-heading" }, ["No answer"]),
        el("p", { class: "abstain-reason" }, [el("strong", {}, ["No answer:"]), " " + data.abstain_reason]),
        el("p", { class: "hint" }, ["The passages closest to the question are below; they may still help."]),
      ]);
    }
    return null;
  }

  function renderPassage(p, question, q) {
    return el("li", { class: "passage", id: "p" + p.rank }, [
      el("h3", { class: "passage-title" }, [
        el("span", { class: "rank" }, ["[" + p.rank + "]"]),
        " ",
        el("a", { href: documentUrl(p.source, p.start, p.end, q) }, [p.title || p.source]),
      ]),
      el("p", { class: "passage-meta" }, [
        el("span", { class: "date" }, [p.date || "undated"]),
        " ",
        el("span", { class: "source" }, [p.source + " · " + p.start + "–" + p.end]),
        " ",
        el("span", { class: "score" }, ["score " + p.score.toFixed(4)]),
      ]),
      el("p", { class: "passage-text" }, [highlight(p.text, question)]),
    ]);
  }

  function render(data, q) {
    const nodes = [];
    const answer = renderAnswer(data, q);
    if (answer) {
      nodes.push(answer);
    }
    if (data.passages.length) {
      nodes.push(el("h2", { class: "passages-heading" }, [
        "Passages ",
        el("span", { class: "count" },
          [data.passages.length + " found in " + Math.round(data.took_ms) + " ms"]),
      ]));
      nodes.push(el("ol", { class: "passages" },
        data.passages.map((p) => renderPassage(p, data.question, q))));
    } else {
      nodes.push(el("div", { class: "notice empty", role: "status" }, [
        el("strong", {}, ["No passages match this question."]),
        " Try other words, or check that the seeds folder has articles.",
      ]));
    }
    results.replaceChildren(...nodes);
  }

  function renderError(message) {
    results.replaceChildren(el("div", { class: "notice error", role: "alert" }, [
      el("strong", {}, ["Cannot answer that:"]), " " + message,
    ]));
  }

  let current = null;

  async function ask(q, k, push) {
    if (current) {
      current.abort();
    }
    const controller = new AbortController();
    current = controller;
    form.setAttribute("aria-busy", "true");
    status.textContent = "Searching…";
    if (push) {
      history.pushState({ q: q, k: k }, "", "/?" + new URLSearchParams({ q: q, k: String(k) }));
    }
    document.title = q + " · seedqa";
    try {
      const response = await fetch("/api/ask", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ question: q, k: k }),
        signal: controller.signal,
      });
      let data = null;
      try {
        data = await response.json();
      } catch (err) {
        data = { detail: response.status + " " + response.statusText };
      }
      if (response.ok) {
        render(data, q);
        status.textContent = data.answer ? "Answer found." :
          (data.passages.length ? "No answer; showing passages." : "No passages found.");
      } else {
        renderError(typeof data.detail === "string" ? data.detail : response.statusText);
        status.textContent = "";
      }
    } catch (err) {
      if (err.name === "AbortError") {
        return;
      }
      renderError("the server could not be reached (" + err.message + ")");
      status.textContent = "";
    } finally {
      if (current === controller) {
        current = null;
        form.removeAttribute("aria-busy");
      }
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = input.value;
    if (!q.trim()) {
      renderError("type a question first.");
      input.focus();
      return;
    }
    ask(q, parseInt(kSelect.value, 10) || 5, true);
  });

  window.addEventListener("popstate", () => {
    const params = new URLSearchParams(window.location.search);
    const q = params.get("q");
    if (q) {
      input.value = q;
      const k = parseInt(params.get("k") || "5", 10) || 5;
      if ([...kSelect.options].some((o) => o.value === String(k))) {
        kSelect.value = String(k);
      }
      ask(q, k, false);
    } else {
      input.value = "";
      results.replaceChildren();
      status.textContent = "";
      document.title = "seedqa";
    }
  });
})();
