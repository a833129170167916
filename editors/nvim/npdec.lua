-- Neovim support for .npde files: the filetype and the npdec language server.
--
-- Put this file on your runtime path (for example ~/.config/nvim/plugin/npdec.lua) with `npdec` on
-- your PATH. Works with Neovim 0.7 and later.

vim.cmd([[autocmd BufRead,BufNewFile *.npde setfiletype npde]])
vim.cmd([[autocmd FileType npde setlocal commentstring=#\ %s]])

local function start_npdec()
  local file = vim.api.nvim_buf_get_name(0)
  local root = vim.fn.fnamemodify(file, ':p:h')
  local client = vim.lsp.start_client({
    name = 'npdec',
    cmd = { 'npdec', 'lsp' },
    root_dir = root,
  })
  if client then
    vim.lsp.buf_attach_client(0, client)
  end
end

vim.api.nvim_create_autocmd('FileType', { pattern = 'npde', callback = start_npdec })
