"""The built-in panel plugins: `auth`, `home` and `desk`, registered through the entry-point group
`echat.plugins` like any other plugin. The contract they are written against is `panel.types`
(re-exported by `plugins.contract` for plugins written against that path)."""
