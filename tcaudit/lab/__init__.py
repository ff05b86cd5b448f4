"""The lab: throwaway namespaces with vendor stand-ins, the self-test and the demo.

``sandbox`` is the fixture toolkit the tests, benchmarks and scenarios build on.
"""
