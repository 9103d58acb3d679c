// Starts GraphiQL against the endpoint that served the page. Kept out of the HTML so the page
// needs no inline script.
(function () {
  var fetcher = GraphiQL.createFetcher({ url: window.location.pathname });
  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultEditorToolbarTabs: 'headers',
      shouldPersistHeaders: false,
    }),
  );
})();
