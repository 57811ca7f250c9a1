# Stand-in for the compose file's Redis image: Debian 12's Redis 7 with protected mode off and
# /data as its directory, as in the official image.
FROM mailweb-stand-in/debian:bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data
WORKDIR /data
COPY redis-entry.sh /usr/local/bin/redis-entry.sh
ENTRYPOINT ["/usr/local/bin/redis-entry.sh"]
CMD ["redis-server"]
