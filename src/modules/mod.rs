//! Domain modules. Each is a folder with its routes, service, entities, events and tasks;
//! they talk to each other only through events and public service methods.

pub mod events;
