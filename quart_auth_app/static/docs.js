// Starts Swagger UI on /docs. A file of its own because the page's CSP admits no inline script.
"use strict";
(function () {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    // Otherwise Swagger UI may show a badge fetched from validator.swagger.io: an outside request.
    validatorUrl: null,
  });
})();
