"""Search over the conversations a user may see.

Query language (what people type in the search box)::

    invoice from:alice@example.com to:billing subject:"march report" has:attachment
    is:open  is:closed  is:pending  is:snoozed  assignee:me  assignee:none  label:vip

Free words and quoted phrases match subject, addresses and body. On PostgreSQL they use the
generated ``search_vector`` column (migration 0002) with ``websearch_to_tsquery`` and results
are ranked by ``ts_rank``; on SQLite (the no-server default) a LIKE search stands in, ordered
by recency.
"""

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVectorField
from django.db import connection
from django.db.models import Expression, F, Max, Q, QuerySet

from accounts.selectors import AnyUser, visible_mailboxes
from mailweb.models import Conversation, Message
from mailweb.selectors import visible_conversations, with_unread

RESULTS_PER_PAGE = 50
# Ranking every match of a common word is the expensive part of full-text search: only the
# newest matching messages are ranked, RANK_WINDOW of them, widened for deeper pages.
RANK_WINDOW = 500
CANDIDATE_CAP = 20000

_OPERATOR = re.compile(r"^(from|to|subject|has|is|assignee|label|in):(.*)$", re.I)


@dataclass
class ParsedQuery:
    words: list[str] = field(default_factory=list)
    from_: list[str] = field(default_factory=list)
    to: list[str] = field(default_factory=list)
    subject: list[str] = field(default_factory=list)
    has_attachment: bool = False
    statuses: list[str] = field(default_factory=list)
    assignee: str = ""
    labels: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.words
            or self.from_
            or self.to
            or self.subject
            or self.has_attachment
            or self.statuses
            or self.assignee
            or self.labels
        )

    @property
    def text(self) -> str:
        return " ".join(self.words)


def parse_query(raw: str) -> ParsedQuery:
    try:
        tokens = shlex.split(raw)
    except ValueError:  # an unbalanced quote: read it word by word
        tokens = raw.replace('"', " ").split()
    parsed = ParsedQuery()
    for token in tokens:
        match = _OPERATOR.match(token)
        if not match or not match.group(2):
            parsed.words.append(token)
            continue
        name, value = match.group(1).lower(), match.group(2)
        lowered = value.lower()
        if name == "from":
            parsed.from_.append(value)
        elif name == "to":
            parsed.to.append(value)
        elif name == "subject":
            parsed.subject.append(value)
        elif name == "has" and lowered in {"attachment", "attachments", "file"}:
            parsed.has_attachment = True
        elif name in {"is", "in"} and lowered in Conversation.Status.values:
            parsed.statuses.append(lowered)
        elif name == "assignee":
            parsed.assignee = lowered
        elif name == "label":
            parsed.labels.append(value)
        else:
            parsed.words.append(token)
    return parsed


def _message_filter(parsed: ParsedQuery) -> Q:
    condition = Q()
    for value in parsed.from_:
        condition &= Q(from_address__icontains=value) | Q(from_name__icontains=value)
    for value in parsed.to:
        condition &= Q(addresses_text__icontains=value) & ~Q(from_address__iexact=value)
    for value in parsed.subject:
        condition &= Q(subject__icontains=value)
    if parsed.has_attachment:
        condition &= Q(has_attachments=True)
    return condition


def _conversation_filter(
    queryset: QuerySet[Conversation], user: AnyUser, parsed: ParsedQuery
) -> QuerySet[Conversation]:
    if parsed.statuses:
        queryset = queryset.filter(status__in=parsed.statuses)
    if parsed.assignee == "me":
        queryset = queryset.filter(assignee_id=user.pk)
    elif parsed.assignee in {"none", "unassigned", "nobody"}:
        queryset = queryset.filter(assignee__isnull=True)
    elif parsed.assignee:
        queryset = queryset.filter(assignee__email__istartswith=parsed.assignee)
    for name in parsed.labels:
        queryset = queryset.filter(labels__name__iexact=name)
    return queryset


@dataclass
class SearchResults:
    conversations: list[Conversation]
    query: ParsedQuery
    page: int
    has_next: bool


def search(user: AnyUser, raw: str, page: int = 1) -> SearchResults:
    """Conversations matching ``raw``, best first; ``page`` counts from 1."""
    parsed = parse_query(raw)
    page = max(1, page)
    if parsed.empty:
        return SearchResults([], parsed, page, has_next=False)
    visible = visible_mailboxes(user)
    start = (page - 1) * RESULTS_PER_PAGE
    stop = start + RESULTS_PER_PAGE + 1
    message_filter = _message_filter(parsed)
    if not parsed.words and message_filter == Q():
        conversations = _conversation_filter(visible_conversations(user), user, parsed)
        ordered = list(
            with_unread(conversations, user)
            .select_related("mailbox", "assignee")
            .prefetch_related("labels")
            .order_by("-last_activity_at", "-id")[start:stop]
        )
        return SearchResults(
            ordered[:RESULTS_PER_PAGE], parsed, page, has_next=len(ordered) > RESULTS_PER_PAGE
        )

    # Messages carry their mailbox, so visibility needs no join; conversations are joined
    # only for conversation-level operators (is:, assignee:, label:).
    messages = Message.objects.filter(message_filter, mailbox__in=visible)
    if parsed.statuses or parsed.assignee or parsed.labels:
        scoped = _conversation_filter(
            Conversation.objects.filter(mailbox__in=visible), user, parsed
        )
        messages = messages.filter(conversation__in=scoped.values("pk"))
    postgres = connection.vendor == "postgresql"
    if postgres:
        addresses = _address_query(parsed)
        if addresses is not None:
            messages = messages.annotate(address_vector=MessageSearchVector()).filter(
                address_vector=addresses
            )
    if postgres and parsed.words:
        ids = _ranked_postgres(messages, parsed.text, start, stop)
    else:
        for word in parsed.words:
            messages = messages.filter(
                Q(subject__icontains=word)
                | Q(addresses_text__icontains=word)
                | Q(text_body__icontains=word)
            )
        ids = list(
            messages.values("conversation_id")
            .annotate(newest=Max("received_at"))
            .order_by("-newest", "-conversation_id")
            .values_list("conversation_id", flat=True)[start:stop]
        )
    by_id = {
        conversation.pk: conversation
        for conversation in with_unread(Conversation.objects.filter(pk__in=ids), user)
        .select_related("mailbox", "assignee")
        .prefetch_related("labels")
    }
    ordered = [by_id[pk] for pk in ids if pk in by_id]
    return SearchResults(
        ordered[:RESULTS_PER_PAGE], parsed, page, has_next=len(ids) > RESULTS_PER_PAGE
    )


_ADDRESS_TERM = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|[\w+-]+")


def _address_query(parsed: ParsedQuery) -> SearchQuery | None:
    """A full-text pre-filter for from:/to: values, so the exact (substring) match that
    follows reads only candidate rows instead of every message.

    The search column indexes each address as one token ("ann@x.org") and each name word
    ("ann"), so a prefix query ("ann:*") finds both. Values that the tokenizer would split
    differently (a bare domain like "x.org") get no pre-filter; the substring match alone
    still finds them.
    """
    terms = []
    for value in [*parsed.from_, *parsed.to]:
        if _ADDRESS_TERM.fullmatch(value):
            escaped = value.lower().replace("\\", "\\\\").replace("'", "''")
            terms.append(f"'{escaped}':*")
    if not terms:
        return None
    return SearchQuery(" & ".join(terms), config="simple", search_type="raw")


class MessageSearchVector(Expression):
    """The generated ``mailweb_message.search_vector`` column, which is not a model field.

    Compiled against whatever alias the message table has in the query being built, so it
    also works inside subqueries (where Django renames tables to U0, U1, ...).
    """

    output_field = SearchVectorField()

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        alias = compiler.query.get_initial_alias()
        return f"{compiler.quote_name_unless_alias(alias)}.search_vector", []


def _ranked_postgres(messages: QuerySet[Message], text: str, start: int, stop: int) -> list[int]:
    """Conversation ids ranked by their best-matching message (ts_rank, then recency).

    Either tsquery may match, mirroring how the column was built: 'simple' keeps names and
    addresses whole, 'english' stems body words. Only the newest matches are ranked (the
    window), which bounds the cost of a common word. The window comes from one of two plans,
    chosen here from PostgreSQL's row estimate (the statistics of the search column know the
    frequent words) rather than left to the planner, whose LIMIT costing picks an ordered
    scan even for a rare word and then reads the whole table looking for it: a rare word
    fetches its matches through the GIN index in any order and sorts them here; a frequent
    word walks the received_at index newest first and meets its matches at once.
    """
    query = SearchQuery(text, config="english", search_type="websearch") | SearchQuery(
        text, config="simple", search_type="websearch"
    )
    matching = messages.annotate(vector=MessageSearchVector()).filter(vector=query)
    size = max(RANK_WINDOW, stop * 10)
    estimate, total = _estimated_rows(matching)
    # Reading the newest rows until `size` matches turn up costs about size * total / estimate
    # rows; fetching every match through the index costs about `estimate`.
    if estimate > CANDIDATE_CAP or estimate * estimate > size * total:
        window = list(matching.order_by("-received_at").values_list("pk", flat=True)[:size])
    else:
        candidates = list(matching.order_by().values_list("pk", "received_at")[: CANDIDATE_CAP + 1])
        if len(candidates) > CANDIDATE_CAP:  # the estimate was low: take the ordered plan
            window = list(matching.order_by("-received_at").values_list("pk", flat=True)[:size])
        else:
            candidates.sort(key=lambda row: (row[1], row[0]), reverse=True)
            window = [pk for pk, _ in candidates[:size]]
    rows = (
        Message.objects.filter(pk__in=window)
        .values("conversation_id")
        .annotate(best=Max(SearchRank(MessageSearchVector(), query)), newest=Max("received_at"))
        .order_by(F("best").desc(), F("newest").desc(), "-conversation_id")
        .values_list("conversation_id", flat=True)[start:stop]
    )
    return list(rows)


def _estimated_rows(queryset: QuerySet[Any]) -> tuple[float, float]:
    """PostgreSQL's estimate of the rows ``queryset`` returns (EXPLAIN, nothing executed) and
    of the rows in the message table."""
    sql, params = queryset.values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
        cursor.execute(
            "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [Message._meta.db_table]
        )
        total = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Plan Rows"]), max(float(total), 1.0)
