# The keyserver image: the application (granian), the front server (nginx,
# `manage.py serve --front-only`), the tree follower, the worker and beat all
# run from it.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 VAR_DIR=/var/lib/keyserver PUBLISH_DIR=/srv/public
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libldap2-dev libsasl2-dev \
    nginx-light libnginx-mod-http-lua \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt requirements-ldap.txt ./
RUN pip install --no-cache-dir -r requirements.txt -r requirements-ldap.txt
COPY . .
RUN useradd --system --home /var/lib/keyserver keyserver \
 && mkdir -p /var/lib/keyserver /srv/public \
 && chown keyserver /var/lib/keyserver /srv/public
USER keyserver
EXPOSE 8000 8080
CMD ["python", "-m", "granian", "--interface", "wsgi", "--host", "0.0.0.0", "--port", "8000", \
     "--workers", "2", "attester.wsgi:application"]
