-- Neovim support for .npde files: the filetype and the npdec language server.
--
-- Put this file on your runtime path (for example ~/.config/nvim/plugin/npdec.lua) with `npdec` on
-- your PATH. Works with Neovim 0.7 and later.

vim.cmd([[autocmd BufRead,BufNewFile *.npde setfiletype npde]])
vim.cmd([[autocmd FileType npde setlocal commentstring=#\ %s]])

-- The id of the running npdec client for each root folder, so that every file in a folder shares
-- one server.
local clients = {}

local function attach_npdec(args)
  local file = vim.api.nvim_buf_get_name(args.buf)
  local root = vim.fn.fnamemodify(file, ':p:h')
  local id = clients[root]
  -- A client that has exited is no longer found by its id, so a new one starts.
  if id == nil or vim.lsp.get_client_by_id(id) == nil then
    id = vim.lsp.start_client({
      name = 'npdec',
      cmd = { 'npdec', 'lsp' },
      root_dir = root,
    })
    clients[root] = id
  end
  if id then
    vim.lsp.buf_attach_client(args.buf, id)
  end
end

vim.api.nvim_create_autocmd('FileType', { pattern = 'npde', callback = attach_npdec })
