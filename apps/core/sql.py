"""Rows of a query written in SQL, read back into model instances as Django's ORM reads them.

For the few queries on a turn's critical path whose compiling by the ORM costs more than the
database's running them (a session with its character and two EXISTS: 2.7 ms of Python against
0.5 ms in all as SQL, on the bench box). The SQL names its columns from the models' own metadata,
and each value goes through the same converters the ORM applies (JSON, UUIDs and dates on SQLite).
"""

from django.core.exceptions import ValidationError
from django.db import connections
from django.db.models import Model


def one_row(query, *keys: tuple[type[Model], object], using: str) -> tuple | None:
    """The first row of `query(alias)` (SQL whose parameters are primary keys: `keys`, each a model and
    a value), or None; None too for a value that is no key of its model (a malformed id)."""
    connection = connections[using]
    try:
        params = [key(model, value, connection) for model, value in keys]
    except ValidationError:
        return None
    rows = fetch(connection, query(connection.alias), params)
    return rows[0] if rows else None


def fetch(connection, query: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def table(model: type[Model], connection) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def column(model: type[Model], name: str, connection) -> str:
    return connection.ops.quote_name(model._meta.get_field(name).column)


def key(model: type[Model], value, connection):
    """`value` as the database takes the model's primary key (ValidationError when it is none)."""
    pk = model._meta.pk
    return pk.get_db_prep_value(pk.to_python(value), connection)


def columns(model: type[Model], alias: str, connection) -> str:
    """`alias`.column, ... for each of the model's concrete fields, in their order."""
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(field.column)}" for field in model._meta.concrete_fields)


def instance(model: type[Model], row, start: int, connection) -> Model:
    """The model instance held in `row` from `start` on (its `columns`), as the ORM builds it."""
    names, converters = _reading(model, connection)
    values = list(row[start : start + len(names)])
    for i, column, convert in converters:
        values[i] = convert(values[i], column, connection)
    return model.from_db(connection.alias, names, values)


def insert(instance: Model, connection) -> tuple[str, list]:
    """The INSERT of `instance` as the ORM writes it (its fields' defaults, `auto_now_add`, JSON), with
    no RETURNING: to run inside a larger statement."""
    from django.db.models.sql import InsertQuery

    query = InsertQuery(type(instance))
    query.insert_values(type(instance)._meta.concrete_fields, [instance])
    ((statement, params),) = query.get_compiler(connection=connection).as_sql()
    return statement, list(params)


def _reading(model: type[Model], connection) -> tuple[list[str], list[tuple]]:
    """The model's field names and the ORM's converters of each column, worked out once per model and
    connection (each thread has its own: the backend's converters are its methods)."""
    readings = connection.__dict__.setdefault("_sql_readings", {})
    if model not in readings:
        fields, converters = model._meta.concrete_fields, []
        for i, field in enumerate(fields):
            column = field.get_col(model._meta.db_table)
            for convert in connection.ops.get_db_converters(column) + column.get_db_converters(connection):
                converters.append((i, column, convert))
        readings[model] = [field.attname for field in fields], converters
    return readings[model]
