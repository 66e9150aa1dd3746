// Progressive enhancement for Chhavi's pages. Every page works without this file;
// it adds the photo preview, live progress, the share sheet and the offline page.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function format(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, key) { return values[key]; });
  }

  function localNumber(n) {
    try { return new Intl.NumberFormat(document.documentElement.lang).format(n); } catch (e) { return String(n); }
  }

  // Dates as the reader says them: "3 minutes ago" in their language (the server prints a plain date).
  if (window.Intl && Intl.RelativeTimeFormat) {
    var relative = new Intl.RelativeTimeFormat(document.documentElement.lang, { numeric: "auto" });
    document.querySelectorAll("time[data-relative]").forEach(function (el) {
      var seconds = (new Date(el.getAttribute("datetime")) - Date.now()) / 1000;
      var units = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
      for (var i = 0; i < units.length; i++) {
        if (Math.abs(seconds) >= units[i][1] || units[i][0] === "second") {
          el.textContent = relative.format(Math.round(seconds / units[i][1]), units[i][0]);
          el.title = new Intl.DateTimeFormat(document.documentElement.lang, { dateStyle: "long", timeStyle: "short" }).format(new Date(el.getAttribute("datetime")));
          break;
        }
      }
    });
  }

  // Language switcher: submit on change.
  document.querySelectorAll("[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  // Photo preview before upload.
  var input = document.getElementById("image");
  if (input) {
    input.addEventListener("change", function () {
      var file = input.files && input.files[0];
      var figure = document.querySelector(".preview");
      if (!file || !figure) return;
      document.getElementById("preview-img").src = URL.createObjectURL(file);
      figure.hidden = false;
    });
  }

  // Live progress: poll the job's JSON until it finishes.
  var job = document.getElementById("job");
  if (job && (job.dataset.status === "queued" || job.dataset.status === "running")) {
    var texts = document.getElementById("i18n-progress").dataset;
    var started = Date.now(), firstProgress = null;
    var poll = function () {
      fetch(job.dataset.api, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (data) {
          var percent = Math.round(data.progress * 100);
          var status = document.getElementById("job-status");
          document.getElementById("job-progress").value = percent;
          document.getElementById("job-percent").textContent = format(texts.percent, { percent: localNumber(percent) });
          if (data.status === "queued") status.textContent = format(texts.queued, { position: localNumber(data.queue_position || 1) });
          else if (data.status === "running") {
            status.textContent = texts.running;
            if (percent > 0) {
              if (firstProgress === null) firstProgress = { t: Date.now(), p: data.progress };
              var rate = (data.progress - firstProgress.p) / Math.max(1, Date.now() - firstProgress.t);
              var eta = document.getElementById("job-eta");
              if (rate > 0) {
                eta.textContent = format(texts.eta, { seconds: localNumber(Math.ceil((1 - data.progress) / rate / 1000)) });
                eta.hidden = false;
              }
            }
          }
          if (data.status === "succeeded" || data.status === "failed" || data.status === "canceled") {
            // The server page shows results and errors in the user's language.
            window.location.reload();
            return;
          }
          setTimeout(poll, Date.now() - started < 60000 ? 700 : 2000);
        })
        .catch(function () { setTimeout(poll, 3000); });
    };
    setTimeout(poll, 500);
  }

  // Likeness model training: move the bar as the worker's steps come in; the server page says the rest
  // (step count, the report, errors) in the user's language, so a change of state reloads it.
  var model = document.getElementById("likeness-model");
  if (model && (model.dataset.status === "queued" || model.dataset.status === "running")) {
    var pollModel = function () {
      fetch(model.dataset.api, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (data) {
          if (data.status !== model.dataset.status) { window.location.reload(); return; }
          var percent = Math.round(data.progress * 100), texts = document.getElementById("i18n-likeness").dataset;
          document.getElementById("likeness-progress").value = percent;
          document.getElementById("likeness-steps").textContent =
            format(texts.steps, { step: localNumber(data.step), total: localNumber(data.total_steps) }) + " · " +
            format(texts.percent, { percent: localNumber(percent) });
          setTimeout(pollModel, 2000);
        })
        .catch(function () { setTimeout(pollModel, 5000); });
    };
    setTimeout(pollModel, 1000);
  }

  // Share: the system share sheet with the image itself where the phone allows it.
  var share = document.getElementById("share");
  if (share) {
    var button = document.getElementById("share-button");
    if (navigator.share) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var url = share.dataset.url, title = share.dataset.title;
        fetch(share.dataset.image, { credentials: "same-origin" })
          .then(function (r) { return r.blob(); })
          .then(function (blob) {
            var file = new File([blob], "chhavi.webp", { type: blob.type || "image/webp" });
            if (navigator.canShare && navigator.canShare({ files: [file] })) {
              return navigator.share({ files: [file], title: title, url: url });
            }
            return navigator.share({ title: title, url: url });
          })
          .catch(function () { /* The user closed the sheet; nothing to do. */ });
      });
    }
    var copy = document.getElementById("copy-link");
    copy.addEventListener("click", function () {
      var field = document.getElementById("share-link");
      (navigator.clipboard ? navigator.clipboard.writeText(field.value) : Promise.reject())
        .catch(function () { field.select(); document.execCommand("copy"); })
        .finally(function () { copy.textContent = copy.dataset.copied; });
    });
  }

  // Offline support.
  if ("serviceWorker" in navigator) {
    window.addEventListener("load", function () { navigator.serviceWorker.register("/sw.js", { scope: "/" }); });
  }
})();
