"""The CRS of every read is named once per CRS: the EPSG look-up of a CRS without a code is slow."""

from rasterio.crs import CRS

from mae_remote_sensing import scene


def test_crs_text_looks_up_each_crs_once():
    scene._crs_text_of_wkt.cache_clear()
    utm = CRS.from_epsg(32633)
    assert [scene.crs_text(CRS.from_epsg(32633)) for _ in range(5)] == ["EPSG:32633"] * 5
    assert scene._crs_text_of_wkt.cache_info().misses == 1  # one EPSG look-up for five reads
    local = CRS.from_wkt('LOCAL_CS["arbitrary",UNIT["metre",1]]')
    assert scene.crs_text(local) == local.to_wkt() and scene.crs_text(utm) == "EPSG:32633"
    assert scene.crs_text(None) is None
