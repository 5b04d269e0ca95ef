"""The cloud's relational store: ORM tables, engine/session factory and migrations."""
