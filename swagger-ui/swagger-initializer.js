// Starts Swagger UI on the API description the service embeds. Kept in a
// file of its own, not inline, so the page works under a Content Security
// Policy that allows only same-origin scripts.
window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "swagger.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
    // The online validator would load an image from another site, which
    // the page's Content-Security-Policy forbids.
    validatorUrl: null,
  });
};
