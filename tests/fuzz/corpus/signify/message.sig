untrusted comment: verify with k.pub
RWRETFEDdhhngkoNlAu4GQ+/SLa7VK5Dg04Evusa2dG/CK+gsW0nKrj+38ToMuVKA1zBa66HTg+4JdUFJ6i66srhkrK961/9WwY=
