"""A third-party GraphQL client (gql 4) works against the simulator unchanged but for the URL."""

from __future__ import annotations

import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXTransport
from graphql import GraphQLError

from crm_wave_tests.conftest import Sim


def _client(sim: Sim, token: str | None = None) -> Client:
    transport = HTTPXTransport(url=sim.url, headers={"Authorization": f"Bearer {token or sim.token}"}, timeout=30)
    return Client(transport=transport, fetch_schema_from_transport=True)


def test_gql_fetches_schema_and_runs_a_query_and_a_mutation(wave_sim: Sim) -> None:
    with _client(wave_sim) as session:
        assert session.client.schema is not None
        assert session.client.schema.get_type("InvoiceStatus") is not None

        business = session.execute(gql("{ business { id name currency { code } } }"))["business"]
        assert business["currency"]["code"] == "USD"

        create = GraphQLRequest(
            """mutation Create($input: CustomerCreateInput!) {
                 customerCreate(input: $input) {
                   didSucceed inputErrors { code path }
                   customer { id name email address { country { code name } } }
                 }
               }""",
            variable_values={"input": {"businessId": business["id"], "name": "Gql Ltd", "email": "gql@example.com",
                                       "address": {"countryCode": "SE", "city": "Malmö"}}},
        )
        out = session.execute(create)["customerCreate"]
        assert out["didSucceed"] is True and out["inputErrors"] == []
        assert out["customer"]["address"]["country"] == {"code": "SE", "name": "Sweden"}

        listed = session.execute(GraphQLRequest(
            "query($email: String) { business { customers(email: $email) { edges { node { id name } } } } }",
            variable_values={"email": "GQL@example.com"}))
        assert listed["business"]["customers"]["edges"] == [{"node": {"id": out["customer"]["id"], "name": "Gql Ltd"}}]


def test_gql_validates_client_side_against_the_fetched_schema(wave_sim: Sim) -> None:
    with _client(wave_sim) as session:
        with pytest.raises(GraphQLError, match="Cannot query field 'nickname'"):
            session.execute(gql("{ business { customers { edges { node { nickname } } } } }"))
        with pytest.raises(GraphQLError):
            session.execute(gql("{ business { invoices(status: NOT_A_STATUS) { pageInfo { totalCount } } } }"))


def test_gql_reports_a_bad_token(wave_sim: Sim) -> None:
    transport = HTTPXTransport(url=wave_sim.url, headers={"Authorization": "Bearer nope"}, timeout=30)
    client = Client(transport=transport, fetch_schema_from_transport=False)
    with client as session, pytest.raises(TransportQueryError) as info:
        session.execute(gql("{ user { id } }"))
    assert info.value.errors and info.value.errors[0]["extensions"]["code"] == "UNAUTHENTICATED"
