# Stand-in for the Dockerfile's Python base image: Debian 12's Python 3.11 with `python` on PATH,
# as in the official image. Certificates in ./extra-ca (a TLS-inspecting proxy's) are trusted.
FROM mailweb-stand-in/debian:bookworm
COPY extra-ca/ /usr/local/share/ca-certificates/
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/bin/python3 /usr/local/bin/python \
    && update-ca-certificates
ENV LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
