# Stand-in for the compose file's PostgreSQL image: Debian 12's PostgreSQL 15, initialised from
# POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB into PGDATA on first start, as the official
# image does, with password (scram-sha-256) logins over the network and pg_isready on PATH.
FROM mailweb-stand-in/debian:bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY postgres-entry.sh /usr/local/bin/postgres-entry.sh
ENTRYPOINT ["/usr/local/bin/postgres-entry.sh"]
