// An optional extra for Headwater's tracking script: records clicks on links to other sites as
// "Outbound Link Clicked" events. Load it after the core script:
//   <script defer src="https://collector.example/hw-outbound.js"></script>
(function (w, d) {
  d.addEventListener(
    "click",
    function (event) {
      try {
        var link = event.target.closest("a[href]");
        if (link && link.host != location.host && w.headwater) {
          w.headwater.track("Outbound Link Clicked", { url: link.href });
        }
      } catch (e) {}
    },
    true,
  );
})(window, document);
