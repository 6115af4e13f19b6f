// Starts `specnet lsp` for spec files: *.specnet.yaml / .yml / .json, and YAML files that bind
// specnet's schema in a modeline (the server itself leaves other files alone).
"use strict";
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace
    .getConfiguration("specnet")
    .get("server.command", ["specnet", "lsp"]);
  client = new LanguageClient(
    "specnet",
    "specnet",
    { command, args },
    {
      documentSelector: [
        { scheme: "file", language: "yaml" },
        { scheme: "file", language: "json", pattern: "**/*.specnet.json" },
      ],
    },
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
