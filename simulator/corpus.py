"""A small Spanish chat corpus for virtual subscribers: openers and replies, some with accents and ñ
(still GSM-7), a few with emoji (UCS-2) and one long enough to need two SMS."""

from __future__ import annotations

OPENERS: tuple[str, ...] = (
    "Hola",
    "hola guapa",
    "CHAT",
    "AMOR",
    "Hola, ¿hay alguien?",
    "Buenas noches",
    "TAROT",
    "Quiero saber mi futuro",
    "¿Qué tal estás?",
    "Hola, soy Javi de Sevilla",
    "Me aburro, ¿hablamos?",
    "Hola! ¿Cómo te llamas?",
    "AMISTAD",
    "Busco alguien con quien hablar",
    "¿Sigues ahí?",
    "Hola 😊",
    "Buenos días, ¿qué tal el día?",
    "Soy nueva por aquí",
    "¿Me cuentas algo de ti?",
    "Hola, tengo 30 años y vivo en Madrid",
)

REPLIES: tuple[str, ...] = (
    "Sí",
    "Vale",
    "Jajaja",
    "¿En serio?",
    "No sé, dime tú",
    "Me parece bien",
    "Estoy en el trabajo, luego te escribo",
    "¿Y tú de dónde eres?",
    "Me gusta el cine y la playa",
    "Qué bonito lo que dices ❤️",
    "¿Cuándo nos vemos?",
    "Hoy estoy un poco cansado",
    "Mañana tengo el día libre",
    "Cuéntame más",
    "¡Qué risa!",
    "Ahora no puedo, perdona",
    "Me llamo Lucía, encantada",
    "Vivo en Valencia, cerca del mar",
    "¿Tienes foto?",
    "Buenas noches, un beso",
    "Pues mira, te cuento: ayer estuve todo el día pensando en lo que me dijiste y creo que tienes razón, "
    "a veces hay que arriesgarse un poco más y dejar de darle tantas vueltas a todo, ¿no crees? Escríbeme "
    "cuando puedas.",
)
