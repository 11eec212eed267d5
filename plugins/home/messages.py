"""Texts of the start pages."""

ES: dict[str, str] = {
    "home.title": "Inicio",
    "home.menu.operator": "Inicio operador",
    "home.menu.admin": "Inicio panel de control",
    "home.operator.title": "Escritorio del operador",
    "home.admin.title": "Panel de control",
    "home.welcome": "Hola, {name}.",
    "home.empty": "Tu cuenta todavía no tiene acceso a ninguna sección. Pide permisos al administrador.",
}

EN: dict[str, str] = {
    "home.title": "Start",
    "home.menu.operator": "Operator start",
    "home.menu.admin": "Control panel start",
    "home.operator.title": "Operator's desk",
    "home.admin.title": "Control panel",
    "home.welcome": "Hello, {name}.",
    "home.empty": "Your account cannot open any section yet. Ask the administrator for permissions.",
}
