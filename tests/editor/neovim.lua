-- Run by tests/test_lsp_neovim.py: `nvim --headless -u NONE -l`-style, with the spec to open
-- and the file to write results to in the environment. Neovim's own LSP client starts
-- `specnet lsp`, attaches it to the buffer, waits for its diagnostics, asks for inlay hints
-- and hover, and writes what it received as JSON.
local spec = os.getenv("SPECNET_NVIM_SPEC")
local out = os.getenv("SPECNET_NVIM_OUT")
local python = os.getenv("SPECNET_NVIM_PYTHON")
local result = { diagnostics = {}, hints = nil, errors = {} }

local function finish()
  local f = assert(io.open(out, "w"))
  f:write(vim.fn.json_encode(result))
  f:close()
  vim.cmd("qall!")
end

vim.cmd("edit " .. vim.fn.fnameescape(spec))
local bufnr = vim.api.nvim_get_current_buf()
local client_id = vim.lsp.start_client({
  name = "specnet",
  cmd = { python, "-m", "specnet", "lsp" },
  root_dir = vim.fn.fnamemodify(spec, ":h"),
  on_error = function(code, err) table.insert(result.errors, tostring(code) .. " " .. tostring(err)) end,
})
if client_id == nil then
  table.insert(result.errors, "the client did not start")
  finish()
end
vim.lsp.buf_attach_client(bufnr, client_id)

local got = vim.wait(60000, function() return #vim.diagnostic.get(bufnr) > 0 end, 50)
if not got then table.insert(result.errors, "no diagnostics within 60 s") end
for _, d in ipairs(vim.diagnostic.get(bufnr)) do
  table.insert(result.diagnostics, {
    lnum = d.lnum, col = d.col, end_lnum = d.end_lnum, end_col = d.end_col,
    message = d.message, severity = d.severity, source = d.source,
  })
end

local client = vim.lsp.get_client_by_id(client_id)
local params = {
  textDocument = vim.lsp.util.make_text_document_params(bufnr),
  range = { start = { line = 0, character = 0 }, ["end"] = { line = vim.api.nvim_buf_line_count(bufnr), character = 0 } },
}
local response, err = client.request_sync("textDocument/inlayHint", params, 30000, bufnr)
if response == nil then
  table.insert(result.errors, "inlay hints: " .. tostring(err))
elseif response.err then
  table.insert(result.errors, "inlay hints: " .. vim.inspect(response.err))
else
  result.hints = response.result
end
result.capabilities = {
  inlay_hint = client.server_capabilities.inlayHintProvider ~= nil,
  hover = client.server_capabilities.hoverProvider ~= nil,
  rename = client.server_capabilities.renameProvider ~= nil,
}
client.stop()
finish()
