// warren's Swagger UI set-up, kept out of index.html so that the page has no inline script.
window.onload = function () {
  window.ui = SwaggerUIBundle({
    // Resolved against the page (/docs), so it also works behind a path prefix; made
    // absolute so that "Try it out" calls the host that served the page.
    url: new URL("openapi.json", window.location.href).href,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    displayRequestDuration: true,
    // No calls to the public validator service: the page needs no outside network.
    validatorUrl: null
  });
};
