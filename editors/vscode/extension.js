// Starts `npdec lsp` for .npde files.
const vscode = require('vscode');
const { LanguageClient } = require('vscode-languageclient/node');

let client;

function activate() {
  const command = vscode.workspace.getConfiguration('npdec').get('path', 'npdec');
  client = new LanguageClient(
    'npdec',
    'npdec',
    { command, args: ['lsp'] },
    { documentSelector: [{ scheme: 'file', language: 'npde' }] }
  );
  client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
